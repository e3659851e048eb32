package dev.ferry.memory;

import dev.ferry.api.DirtyClient;
import dev.ferry.api.MemorySection;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Renders thousands of seeded random region graphs and compares every page of the flat view with
 * a naive model that resolves each guest address by walking the graph top-down, as QEMU's
 * docs/devel/memory.rst describes: the highest-priority enabled subregion covering the address
 * wins (the one added last among equal priorities); an alias redirects to its target; a container
 * claims only what its subregions claim, while a RAM or I/O region claims the rest of its range.
 */
class FlatViewRenderTest {

    private static final long PAGE = 4096;
    private static final int GRAPHS = 3000;
    private static final long BASE_SEED = 0x5eed_f1a7L;

    private static final List<MemfdRamBlock> BLOCKS = new ArrayList<>();

    @BeforeAll
    static void allocateBlocks() {
        long[] sizes = {64 << 10, 128 << 10, 256 << 10, 1 << 20};
        for (int i = 0; i < sizes.length; i++) {
            BLOCKS.add(MemfdRamBlock.allocate("render-test-" + i, sizes[i]));
        }
    }

    @AfterAll
    static void freeBlocks() {
        BLOCKS.forEach(MemfdRamBlock::close);
        BLOCKS.clear();
    }

    private static final IoHandler NO_IO = new IoHandler() {
        @Override
        public long read(long offset, int size) {
            return 0;
        }

        @Override
        public void write(long offset, long value, int size) {
        }
    };

    // ---- the model

    enum Kind { CONTAINER, RAM, IO, ALIAS }

    /** The test's own copy of the graph, kept independently of MemoryRegion's state. */
    static final class Node {
        final int index;
        final Kind kind;
        final long size;
        final MemoryRegion mr;
        final Node target;
        long aliasOffset;
        Node parent;
        long address;
        int priority;
        long seq;
        boolean enabled = true;
        boolean readOnly;
        int logMask;
        final List<Node> subs = new ArrayList<>();
        // subs in lookup order (priority, then most recently added), refreshed before each check
        Node[] ordered = new Node[0];

        Node(int index, Kind kind, long size, MemoryRegion mr, Node target, long aliasOffset) {
            this.index = index;
            this.kind = kind;
            this.size = size;
            this.mr = mr;
            this.target = target;
            this.aliasOffset = aliasOffset;
        }

        boolean canHaveSubregions() {
            return kind != Kind.ALIAS;
        }
    }

    /** What the model says one guest address maps to. */
    record Resolved(Node region, long offset, boolean readOnly) {
    }

    // How often the model went through an alias, and what the pages it checked mapped to: a guard
    // against a generator that stops producing interesting graphs.
    static long aliasHops;
    static long readOnlyPages;
    static long ioPages;
    static long ramPages;
    static long unmappedPages;

    static final Comparator<Node> ORDER = Comparator.comparingInt((Node n) -> n.priority).reversed()
            .thenComparing(Comparator.comparingLong((Node n) -> n.seq).reversed());

    /** @param addr offset within {@code n} */
    static Resolved resolve(Node n, long addr, boolean readOnly) {
        if (n.kind == Kind.ALIAS) {
            aliasHops++;
        }
        if (!n.enabled || addr < 0 || addr >= n.size) {
            return null;
        }
        readOnly |= n.readOnly;
        if (n.kind == Kind.ALIAS) {
            return resolve(n.target, addr + n.aliasOffset, readOnly);
        }
        for (Node sub : n.ordered) {
            if (addr >= sub.address && addr < sub.address + sub.size) {
                Resolved r = resolve(sub, addr - sub.address, readOnly);
                if (r != null) {
                    return r;
                }
            }
        }
        return n.kind == Kind.RAM || n.kind == Kind.IO ? new Resolved(n, addr, readOnly) : null;
    }

    /** One random graph: its memory system, nodes (by creation index) and the root. */
    static final class Graph {
        final Random rnd;
        final MemorySystem ms = new MemorySystem();
        final List<Node> nodes = new ArrayList<>();
        long seq;
        Node root;
        AddressSpace as;
        boolean globalLog;

        Graph(Random rnd) {
            this.rnd = rnd;
        }

        long pages(long max) {
            return PAGE * (1 + rnd.nextInt((int) max));
        }

        int priority() {
            return rnd.nextInt(4) - 1; // -1..2: many equal priorities
        }

        Node create(Kind kind, long rootPages) {
            int index = nodes.size();
            String name = kind.name().toLowerCase(java.util.Locale.ROOT) + index;
            Node n = null;
            switch (kind) {
                case CONTAINER -> {
                    long size = pages(rootPages);
                    n = new Node(index, kind, size, ms.container(name, size), null, 0);
                }
                case RAM -> {
                    MemfdRamBlock block = BLOCKS.get(rnd.nextInt(BLOCKS.size()));
                    n = new Node(index, kind, block.size(), ms.ramRegion(name, block), null, 0);
                }
                case IO -> {
                    long size = pages(32);
                    n = new Node(index, kind, size, ms.ioRegion(name, size, NO_IO), null, 0);
                }
                case ALIAS -> {
                    Node target = nodes.get(rnd.nextInt(nodes.size()));
                    long offset = PAGE * rnd.nextInt((int) (target.size / PAGE) + 2);
                    long size = pages(Math.max(1, target.size / PAGE));
                    n = new Node(index, kind, size, ms.alias(name, target.mr, offset, size), target, offset);
                }
            }
            nodes.add(n);
            return n;
        }

        void map(Node parent, Node child, long address, int priority) {
            parent.mr.addSubregionOverlap(address, child.mr, priority);
            child.parent = parent;
            child.address = address;
            child.priority = priority;
            child.seq = ++seq;
            parent.subs.add(child);
        }

        void unmap(Node child) {
            child.parent.mr.removeSubregion(child.mr);
            child.parent.subs.remove(child);
            child.parent = null;
        }

        /** Maps a few unmapped nodes of lower index (so the graph stays acyclic) into {@code parent}. */
        void fill(Node parent, int count) {
            for (int k = 0; k < count; k++) {
                List<Node> free = new ArrayList<>();
                for (Node n : nodes) {
                    if (n.index < parent.index && n.parent == null && n != root) {
                        free.add(n);
                    }
                }
                if (free.isEmpty()) {
                    return;
                }
                Node child = free.get(rnd.nextInt(free.size()));
                long address = PAGE * rnd.nextInt((int) (parent.size / PAGE));
                map(parent, child, address, priority());
            }
        }

        void build() {
            long rootPages = 64L << rnd.nextInt(3); // 256 KiB .. 1 MiB
            int count = 4 + rnd.nextInt(16);
            for (int i = 0; i < count; i++) {
                int r = rnd.nextInt(100);
                Kind kind = i == 0 ? (r < 50 ? Kind.RAM : Kind.IO)
                        : r < 30 ? Kind.CONTAINER : r < 55 ? Kind.RAM : r < 70 ? Kind.IO : Kind.ALIAS;
                Node n = create(kind, rootPages);
                if (kind == Kind.CONTAINER) {
                    fill(n, 1 + rnd.nextInt(4));
                } else if (n.canHaveSubregions() && rnd.nextInt(8) == 0) {
                    fill(n, 1 + rnd.nextInt(2));
                }
                if (rnd.nextInt(10) == 0) {
                    setEnabled(n, false);
                }
                if (rnd.nextInt(10) == 0) {
                    setReadOnly(n, true);
                }
                if (kind == Kind.RAM && rnd.nextInt(4) == 0) {
                    setLog(n, rnd.nextBoolean() ? DirtyClient.VGA : DirtyClient.CODE, true);
                }
            }
            int index = nodes.size();
            root = new Node(index, Kind.CONTAINER, rootPages * PAGE, ms.container("root", rootPages * PAGE), null, 0);
            nodes.add(root);
            fill(root, 3 + rnd.nextInt(8));
            as = ms.addressSpace("memory", root.mr);
            if (rnd.nextInt(3) == 0) {
                ms.globalDirtyLogStart();
                globalLog = true;
            }
        }

        void setEnabled(Node n, boolean enabled) {
            n.mr.setEnabled(enabled);
            n.enabled = enabled;
        }

        void setReadOnly(Node n, boolean readOnly) {
            n.mr.setReadOnly(readOnly);
            n.readOnly = readOnly;
        }

        void setLog(Node n, DirtyClient client, boolean log) {
            n.mr.setLog(client, log);
            n.logMask = log ? n.logMask | client.bit() : n.logMask & ~client.bit();
        }

        /** Applies one random change to both the graph and the model. @return what it did */
        String mutate() {
            Node n = nodes.get(rnd.nextInt(nodes.size()));
            switch (rnd.nextInt(8)) {
                case 0 -> {
                    setEnabled(n, !n.enabled);
                    return "toggle enabled of " + n.mr.name();
                }
                case 1 -> {
                    setReadOnly(n, !n.readOnly);
                    return "toggle readonly of " + n.mr.name();
                }
                case 2 -> {
                    if (n.parent == null) {
                        return "nothing";
                    }
                    long address = PAGE * rnd.nextInt((int) (n.parent.size / PAGE));
                    n.mr.setAddress(address);
                    n.address = address;
                    n.seq = ++seq; // QEMU re-adds the region: it is now the last added
                    return "move " + n.mr.name() + " to " + address;
                }
                case 3 -> {
                    if (n.parent == null) {
                        return "nothing";
                    }
                    unmap(n);
                    return "unmap " + n.mr.name();
                }
                case 4 -> {
                    if (!n.canHaveSubregions()) {
                        return "nothing";
                    }
                    fill(n, 1);
                    return "fill " + n.mr.name();
                }
                case 5 -> {
                    if (n.kind != Kind.ALIAS) {
                        return "nothing";
                    }
                    long offset = PAGE * rnd.nextInt((int) (n.target.size / PAGE) + 1);
                    n.mr.setAliasOffset(offset);
                    n.aliasOffset = offset;
                    return "alias offset of " + n.mr.name() + " to " + offset;
                }
                case 6 -> {
                    if (n.kind != Kind.RAM) {
                        return "nothing";
                    }
                    DirtyClient client = rnd.nextBoolean() ? DirtyClient.VGA : DirtyClient.CODE;
                    boolean log = !client.in(n.logMask);
                    setLog(n, client, log);
                    return "log " + client + "=" + log + " on " + n.mr.name();
                }
                default -> {
                    if (globalLog) {
                        ms.globalDirtyLogStop();
                    } else {
                        ms.globalDirtyLogStart();
                    }
                    globalLog = !globalLog;
                    return "global log " + globalLog;
                }
            }
        }
    }

    // ---- checks

    static void check(Graph g, FlatView view, String context) {
        for (Node n : g.nodes) {
            n.ordered = n.subs.stream().sorted(ORDER).toArray(Node[]::new);
        }
        FlatRange[] ranges = view.ranges();
        for (int i = 0; i < ranges.length; i++) {
            FlatRange fr = ranges[i];
            if (fr.size() <= 0 || fr.address() < 0 || fr.end() > g.root.size) {
                throw new AssertionError(context + ": bad range " + fr);
            }
            if (fr.address() % PAGE != 0 || fr.size() % PAGE != 0) {
                throw new AssertionError(context + ": range not page-aligned " + fr);
            }
            if (!fr.region().isTerminal()) {
                throw new AssertionError(context + ": range of a non-terminal region " + fr);
            }
            if (i > 0) {
                FlatRange prev = ranges[i - 1];
                if (prev.end() > fr.address()) {
                    throw new AssertionError(context + ": unsorted or overlapping ranges " + prev + " and " + fr);
                }
                if (prev.canMerge(fr)) {
                    throw new AssertionError(context + ": ranges not merged " + prev + " and " + fr);
                }
            }
        }
        List<MemorySection> sections = view.sections();
        assertEquals(ranges.length, sections.size(), context);
        for (long page = 0; page < g.root.size / PAGE; page++) {
            long addr = page * PAGE;
            Resolved want = resolve(g.root, addr, false);
            int i = view.indexOf(addr);
            MemorySection got = view.lookup(addr);
            // An address inside the page, too: lookups must not depend on the page offset.
            long inner = addr + 1 + g.rnd.nextInt((int) PAGE - 1);
            if (want == null) {
                unmappedPages++;
            } else if (want.readOnly()) {
                readOnlyPages++;
            } else if (want.region().kind == Kind.IO) {
                ioPages++;
            } else {
                ramPages++;
            }
            if (want == null) {
                if (i >= 0 || got != null || view.lookup(inner) != null) {
                    throw new AssertionError(context + ": address 0x" + Long.toHexString(addr)
                            + " should be unmapped, view has " + got);
                }
                continue;
            }
            if (i < 0 || got == null) {
                throw new AssertionError(context + ": address 0x" + Long.toHexString(addr) + " should map "
                        + want.region().mr.name() + "+" + want.offset() + ", view has nothing");
            }
            FlatRange fr = view.range(i);
            long offset = fr.offsetInRegion() + (addr - fr.address());
            int mask = want.region().kind == Kind.RAM
                    ? want.region().logMask | (g.globalLog ? DirtyClient.MIGRATION.bit() : 0) : 0;
            if (fr.region() != want.region().mr || offset != want.offset() || fr.readOnly() != want.readOnly()
                    || fr.dirtyLogMask() != mask) {
                throw new AssertionError(context + ": address 0x" + Long.toHexString(addr) + " should map "
                        + want.region().mr.name() + "+" + want.offset() + (want.readOnly() ? " ro" : "")
                        + " log=" + mask + ", view has " + fr.region().name() + "+" + offset
                        + (fr.readOnly() ? " ro" : "") + " log=" + fr.dirtyLogMask());
            }
            assertSame(got, sections.get(i), context);
            assertSame(got, view.lookup(inner), context);
            if (!got.region().equals(want.region().mr.name()) || got.readOnly() != want.readOnly()
                    || got.dirtyLogMask() != mask || got.isRam() != (want.region().kind == Kind.RAM)
                    || (got.isRam() && got.offsetInBlock() + (addr - got.address()) != want.offset())) {
                throw new AssertionError(context + ": section " + got + " disagrees with its range " + fr);
            }
        }
        assertNull(view.lookup(g.root.size), context);
        assertNull(view.lookup(-1), context);
    }

    @Test
    void renderMatchesReferenceModel() {
        for (int graph = 0; graph < GRAPHS; graph++) {
            long seed = BASE_SEED + graph;
            Graph g = new Graph(new Random(seed));
            String context = "seed " + seed;
            try {
                g.build();
                check(g, g.as.flatView(), context + " (initial)");
                for (int step = 0; step < 4; step++) {
                    String what;
                    if (g.rnd.nextBoolean()) {
                        what = g.mutate();
                        check(g, g.as.flatView(), context + " after " + what);
                    } else {
                        // Several changes in one transaction: the transaction's thread sees them
                        // before the commit, and the committed view afterwards agrees.
                        StringBuilder sb = new StringBuilder();
                        g.ms.begin();
                        try {
                            for (int k = 0; k < 3; k++) {
                                sb.append(g.mutate()).append("; ");
                            }
                            what = sb.toString();
                            check(g, g.as.flatView(), context + " inside transaction after " + what);
                        } finally {
                            g.ms.commit();
                        }
                        check(g, g.as.flatView(), context + " after committing " + what);
                    }
                }
            } catch (AssertionError | RuntimeException e) {
                throw new AssertionError("FlatView rendering disagrees with the model; reproduce with "
                        + context + ": " + e.getMessage(), e);
            } finally {
                g.ms.close();
            }
        }
        long total = unmappedPages + readOnlyPages + ioPages + ramPages;
        for (long n : new long[] {aliasHops, unmappedPages, readOnlyPages, ioPages, ramPages}) {
            if (n < total / 50) {
                fail(String.format("generator coverage too thin: %d alias hops, %d unmapped, %d read-only, %d I/O,"
                        + " %d RAM pages of %d", aliasHops, unmappedPages, readOnlyPages, ioPages, ramPages, total));
            }
        }
    }

    /**
     * The region-graph walk reads go through inside a transaction with changes pending finds,
     * at every page and at an address inside it, what the render maps there, and never claims
     * a longer stretch than the render's range.
     */
    @Test
    void walkingTheGraphFindsWhatTheRenderMaps() {
        for (int graph = 0; graph < GRAPHS; graph++) {
            long seed = BASE_SEED + graph;
            Graph g = new Graph(new Random(seed));
            try {
                g.build();
                for (int step = 0; step < 3; step++) {
                    FlatView view = g.as.flatView();
                    for (long page = 0; page <= g.root.size / PAGE; page++) {
                        for (long addr : new long[] {page * PAGE, page * PAGE + 1 + g.rnd.nextInt((int) PAGE - 1)}) {
                            FlatRange walked = FlatView.resolve(g.root.mr, addr);
                            int i = view.indexOf(addr);
                            if (i < 0) {
                                assertNull(walked, "seed " + seed + " 0x" + Long.toHexString(addr));
                                continue;
                            }
                            FlatRange fr = view.range(i);
                            String at = "seed " + seed + " 0x" + Long.toHexString(addr) + ": render " + fr
                                    + ", walk " + walked;
                            assertNotNull(walked, at);
                            assertSame(fr.region(), walked.region(), at);
                            assertEquals(fr.offsetInRegion() + (addr - fr.address()), walked.offsetInRegion(), at);
                            assertEquals(fr.readOnly(), walked.readOnly(), at);
                            assertEquals(addr, walked.address(), at);
                            assertTrue(walked.size() > 0 && walked.end() <= fr.end(), at);
                        }
                    }
                    g.mutate();
                }
            } finally {
                g.ms.close();
            }
        }
    }

    @Test
    void equalPrioritiesLastAddedWins() {
        try (MemorySystem ms = new MemorySystem()) {
            MemfdRamBlock a = BLOCKS.get(0);
            MemoryRegion root = ms.container("root", 1 << 20);
            MemoryRegion r1 = ms.ramRegion("r1", a);
            MemoryRegion r2 = ms.ramRegion("r2", a);
            root.addSubregion(0, r1);
            root.addSubregion(PAGE, r2);
            AddressSpace as = ms.addressSpace("memory", root);
            assertEquals("r1", as.flatView().lookup(0).region());
            assertEquals("r2", as.flatView().lookup(PAGE).region());
            // Moving r1 re-adds it: now it is the last added and covers r2 from 2 pages on.
            r1.setAddress(2 * PAGE);
            FlatView view = as.flatView();
            assertNull(view.lookup(0));
            assertEquals("r2", view.lookup(PAGE).region());
            assertEquals("r1", view.lookup(2 * PAGE).region());
            assertEquals("r1", view.lookup(a.size() + PAGE).region());
            assertEquals(2 * PAGE, view.lookup(a.size() + PAGE).address());
            assertEquals(a.size(), view.lookup(a.size() + PAGE).size());
            assertEquals(0, view.lookup(a.size() + PAGE).offsetInBlock());
            assertNull(view.lookup(a.size() + 2 * PAGE));
            assertEquals(2, view.sections().size(), view.toString());
        }
    }

    @Test
    void containerDoesNotClaimWhatItsSubregionsLeave() {
        try (MemorySystem ms = new MemorySystem()) {
            MemoryRegion root = ms.container("root", 1 << 20);
            MemoryRegion low = ms.ramRegion("low", BLOCKS.get(2));
            MemoryRegion high = ms.container("high", 256 << 10);
            MemoryRegion io = ms.ioRegion("io", PAGE, NO_IO);
            high.addSubregion(2 * PAGE, io);
            root.addSubregionOverlap(0, low, 0);
            root.addSubregionOverlap(0, high, 1);
            AddressSpace as = ms.addressSpace("memory", root);
            assertEquals("low", as.flatView().lookup(0).region());
            assertEquals("io", as.flatView().lookup(2 * PAGE).region());
            assertEquals("low", as.flatView().lookup(3 * PAGE).region());
            assertEquals(3, as.flatView().sections().size(), as.flatView().toString());
            assertEquals(3 * PAGE, as.flatView().sections().get(2).offsetInBlock());
        }
    }
}
