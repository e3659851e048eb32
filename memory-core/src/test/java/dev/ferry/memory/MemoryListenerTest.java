package dev.ferry.memory;

import dev.ferry.api.DirtyClient;
import dev.ferry.api.MemoryListener;
import dev.ferry.api.MemorySection;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The order and content of listener callbacks: passes, priorities, replay, logging, sync. */
class MemoryListenerTest {

    private static final int MIG = DirtyClient.MIGRATION.bit();
    private static final int VGA = DirtyClient.VGA.bit();

    private static final IoHandler NO_IO = new IoHandler() {
        @Override
        public long read(long offset, int size) {
            return 0;
        }

        @Override
        public void write(long offset, long value, int size) {
        }
    };

    private final List<String> log = Collections.synchronizedList(new ArrayList<>());
    private MemorySystem ms;
    private MemfdRamBlock ram0;
    private MemfdRamBlock ram1;
    private MemoryRegion root;
    private MemoryRegion a;
    private MemoryRegion b;
    private MemoryRegion io;
    private AddressSpace as;

    // Sections as RecordingListener.fmt shows them.
    private static final String A = "a@0x0+0x40000";
    private static final String IO = "io@0x80000+0x1000";
    private static final String B = "b@0xc0000+0x10000";

    @BeforeEach
    void setUp() {
        ms = new MemorySystem();
        ram0 = ms.allocateRam("ram0", 256 << 10);
        ram1 = ms.allocateRam("ram1", 64 << 10);
        root = ms.container("root", 1 << 20);
        a = ms.ramRegion("a", ram0);
        b = ms.ramRegion("b", ram1);
        io = ms.ioRegion("io", 4096, NO_IO);
        ms.transaction(() -> {
            root.addSubregion(0, a);
            root.addSubregion(0x80000, io);
        });
        as = ms.addressSpace("memory", root);
    }

    @AfterEach
    void tearDown() {
        ms.close();
    }

    private RecordingListener listener(String name, int priority) {
        return new RecordingListener.PerSection(name, priority, log);
    }

    private static List<String> each(List<RecordingListener> ls, String event) {
        List<String> out = new ArrayList<>();
        for (RecordingListener l : ls) {
            out.add(l.name + " " + event);
        }
        return out;
    }

    private List<String> drain() {
        synchronized (log) {
            List<String> copy = List.copyOf(log);
            log.clear();
            return copy;
        }
    }

    @Test
    void addsRunInPriorityOrderAndDeletesInReverse() {
        RecordingListener l = listener("L", 10);
        RecordingListener m = listener("M", 0);
        RecordingListener n = listener("N", -5);
        RecordingListener m2 = listener("M2", 0);
        for (RecordingListener x : List.of(l, m, n, m2)) {
            as.registerListener(x);
        }
        drain();
        List<RecordingListener> forward = List.of(n, m, m2, l); // equal priorities: registration order
        List<RecordingListener> reverse = forward.reversed();

        root.addSubregion(0xc0000, b);
        List<String> want = new ArrayList<>(each(forward, "begin"));
        want.addAll(each(forward, "nop " + A));
        want.addAll(each(forward, "nop " + IO));
        want.addAll(each(forward, "add " + B));
        want.addAll(each(forward, "commit"));
        assertEquals(want, drain());

        root.removeSubregion(b);
        want = new ArrayList<>(each(forward, "begin"));
        want.addAll(each(reverse, "del " + B));
        want.addAll(each(forward, "nop " + A));
        want.addAll(each(forward, "nop " + IO));
        want.addAll(each(forward, "commit"));
        assertEquals(want, drain());
    }

    @Test
    void nestedTransactionsMakeOnePassAtTheOutermostCommit() {
        as.registerListener(listener("R", 0));
        drain();
        long commits = ms.topologyCommits();
        assertEquals(0, ms.transactionDepth());
        ms.begin();
        ms.begin();
        assertEquals(2, ms.transactionDepth());
        root.addSubregion(0xc0000, b);
        b.setReadOnly(true);
        ms.commit();
        ms.transaction(() -> io.setEnabled(false));
        assertEquals(1, ms.transactionDepth());
        assertEquals(List.of(), drain());
        assertEquals(commits, ms.topologyCommits());
        ms.commit();
        assertEquals(0, ms.transactionDepth());
        assertEquals(commits + 1, ms.topologyCommits());
        assertEquals(List.of("R begin", "R del " + IO, "R nop " + A, "R add " + B, "R commit"), drain());
        assertTrue(as.flatView().lookup(0xc0000).readOnly());

        // A transaction without changes makes no pass at all.
        ms.transaction(() -> { });
        assertEquals(commits + 1, ms.topologyCommits());
        assertEquals(List.of(), drain());

        // Outside a transaction every change is its own pass.
        io.setEnabled(true);
        root.removeSubregion(b);
        assertEquals(commits + 3, ms.topologyCommits());
    }

    @Test
    void commitWithoutBeginIsRefused() {
        assertThrows(IllegalStateException.class, ms::commit);
        ms.transaction(() -> root.addSubregion(0xc0000, b));
        assertThrows(IllegalStateException.class, ms::commit);
    }

    @Test
    void failedChangeInsideTransactionLeavesNoPass() {
        as.registerListener(listener("R", 0));
        drain();
        long commits = ms.topologyCommits();
        assertThrows(IllegalArgumentException.class, () -> root.addSubregion(0, a)); // mapped already
        assertThrows(IllegalArgumentException.class, () -> root.removeSubregion(b)); // not mapped
        MemoryRegion inner = ms.container("inner", 4096);
        root.addSubregion(0xf0000, inner);
        assertThrows(IllegalArgumentException.class, () -> inner.addSubregion(0, root)); // cycle
        assertEquals(0, ms.transactionDepth());
        assertEquals(commits + 1, ms.topologyCommits());
        assertEquals(List.of("R begin", "R nop " + A, "R nop " + IO, "R commit"), drain());
    }

    @Test
    void registrationReplaysTheCurrentTopology() {
        a.setLog(DirtyClient.VGA, true);
        ms.globalDirtyLogStart();
        as.registerListener(listener("R", 0));
        assertEquals(List.of("R logGlobalStart", "R begin", "R add " + A, "R logStart " + A + " 0->" + (VGA | MIG),
                "R add " + IO, "R commit"), drain());
    }

    @Test
    void registrationInsideTransactionReplaysCommittedTopologyThenTheChanges() {
        ms.begin();
        try {
            root.addSubregion(0xc0000, b);
            as.registerListener(listener("R", 0));
            assertEquals(List.of("R begin", "R add " + A, "R add " + IO, "R commit"), drain());
        } finally {
            ms.commit();
        }
        assertEquals(List.of("R begin", "R nop " + A, "R nop " + IO, "R add " + B, "R commit"), drain());
    }

    @Test
    void unchangedSectionsGetNopAndASplitSectionIsReplaced() {
        as.registerListener(listener("R", 0));
        drain();
        root.addSubregionOverlap(0x10000, b, 1);
        assertEquals(List.of("R begin", "R del " + A, "R add a@0x0+0x10000", "R add b@0x10000+0x10000",
                "R add a@0x20000+0x20000", "R nop " + IO, "R commit"), drain());
        MemorySection tail = as.flatView().lookup(0x20000);
        assertEquals(0x20000, tail.offsetInBlock());
    }

    @Test
    void globalDirtyLoggingStartsAndStopsEveryRamSection() {
        RecordingListener p = listener("P", 0);
        RecordingListener q = listener("Q", 1);
        as.registerListener(q);
        as.registerListener(p);
        drain();
        List<RecordingListener> forward = List.of(p, q);

        ms.globalDirtyLogStart();
        assertTrue(ms.globalDirtyLog());
        List<String> want = new ArrayList<>(each(forward, "logGlobalStart"));
        want.addAll(each(forward, "begin"));
        want.addAll(each(forward, "logStart " + A + " 0->" + MIG));
        want.addAll(each(forward, "nop " + A));
        want.addAll(each(forward, "nop " + IO));
        want.addAll(each(forward, "commit"));
        assertEquals(want, drain());
        assertEquals(MIG, as.flatView().lookup(0).dirtyLogMask());
        assertEquals(0, as.flatView().lookup(0x80000).dirtyLogMask());
        assertEquals(MIG, ram0.dirtyLogMask());
        assertEquals(MIG, ram1.dirtyLogMask()); // unmapped blocks are logged for migration, too
        assertThrows(IllegalStateException.class, ms::globalDirtyLogStart);
        assertEquals(List.of(), drain());

        a.setLog(DirtyClient.VGA, true);
        want = new ArrayList<>(each(forward, "begin"));
        want.addAll(each(forward, "logStart " + A + " " + MIG + "->" + (MIG | VGA)));
        want.addAll(each(forward, "nop " + A));
        want.addAll(each(forward, "nop " + IO));
        want.addAll(each(forward, "commit"));
        assertEquals(want, drain());
        assertEquals(MIG | VGA, ram0.dirtyLogMask());

        // Stopping: the sections' logStop come with the deletions (reverse order), and
        // logGlobalStop closes the bracket that logGlobalStart opened.
        ms.globalDirtyLogStop();
        assertFalse(ms.globalDirtyLog());
        want = new ArrayList<>(each(forward, "begin"));
        want.addAll(each(forward.reversed(), "logStop " + A + " " + (MIG | VGA) + "->" + VGA));
        want.addAll(each(forward, "nop " + A));
        want.addAll(each(forward, "nop " + IO));
        want.addAll(each(forward, "commit"));
        want.addAll(each(forward, "logGlobalStop"));
        assertEquals(want, drain());
        assertEquals(VGA, ram0.dirtyLogMask());
        assertEquals(0, ram1.dirtyLogMask());

        ms.globalDirtyLogStop(); // already off: nothing happens
        assertEquals(List.of(), drain());

        a.setLog(DirtyClient.VGA, false);
        want = new ArrayList<>(each(forward, "begin"));
        want.addAll(each(forward.reversed(), "logStop " + A + " " + VGA + "->0"));
        want.addAll(each(forward, "nop " + A));
        want.addAll(each(forward, "nop " + IO));
        want.addAll(each(forward, "commit"));
        assertEquals(want, drain());
        assertEquals(0, ram0.dirtyLogMask());
    }

    @Test
    void onlyRamIsDirtyLogged() {
        assertThrows(IllegalStateException.class, () -> io.setLog(DirtyClient.VGA, true));
        assertThrows(IllegalStateException.class, () -> root.setLog(DirtyClient.MIGRATION, true));
    }

    @Test
    void aListenerMustNotSyncBothPerSectionAndGlobally() {
        MemoryListener both = new RecordingListener("both", 0, log) {
            @Override
            public void logSync(MemorySection section) {
                record("logSync");
            }

            @Override
            public void logSyncGlobal(boolean lastStage) {
                record("logSyncGlobal");
            }
        };
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> as.registerListener(both));
        assertTrue(e.getMessage().contains("logSync") && e.getMessage().contains("logSyncGlobal"), e.getMessage());
        ms.globalDirtyLogStart();
        ms.globalDirtyLogSync(false);
        root.addSubregion(0xc0000, b);
        assertEquals(List.of(), drain(), "a rejected listener is never called");

        RecordingListener ok = listener("ok", 0);
        as.registerListener(ok);
        assertThrows(IllegalArgumentException.class, () -> as.registerListener(ok));
        MemoryRegion otherRoot = ms.container("other", 4096);
        AddressSpace other = ms.addressSpace("other", otherRoot);
        assertThrows(IllegalArgumentException.class, () -> other.registerListener(ok));
    }

    @Test
    void syncIsPerLoggedSectionOrOnceGlobally() {
        RecordingListener p = new RecordingListener.PerSection("P", 0, log);
        RecordingListener g = new RecordingListener.Global("G", 1, log);
        RecordingListener d = new RecordingListener("D", 2, log); // syncs neither way
        root.addSubregion(0xc0000, b);
        for (RecordingListener x : List.of(d, g, p)) {
            as.registerListener(x);
        }
        drain();

        ms.globalDirtyLogSync(false);
        assertEquals(List.of("G logSyncGlobal false", "P logGlobalAfterSync", "G logGlobalAfterSync",
                "D logGlobalAfterSync"), drain(), "nothing is logged: no per-section sync");

        ms.globalDirtyLogStart();
        drain();
        ms.globalDirtyLogSync(false);
        assertEquals(List.of("P logSync " + A, "P logSync " + B, "G logSyncGlobal false", "P logGlobalAfterSync",
                "G logGlobalAfterSync", "D logGlobalAfterSync"), drain());
        ms.globalDirtyLogSync(true);
        assertEquals(List.of("P logSync " + A, "P logSync " + B, "G logSyncGlobal true", "P logGlobalAfterSync",
                "G logGlobalAfterSync", "D logGlobalAfterSync"), drain());

        // Only logged sections are synced.
        ms.globalDirtyLogStop();
        b.setLog(DirtyClient.CODE, true);
        drain();
        ms.globalDirtyLogSync(false);
        assertEquals(List.of("P logSync " + B, "G logSyncGlobal false", "P logGlobalAfterSync",
                "G logGlobalAfterSync", "D logGlobalAfterSync"), drain());
    }

    @Test
    void logClearReachesTheLoggedSectionsOverlappingTheRange() {
        root.addSubregionOverlap(0x10000, b, 1); // splits a into [0, 0x10000) and [0x20000, 0x40000)
        as.registerListener(listener("R", 0));
        drain();
        as.logClear(ram0, 0xf000, 0x12000);
        assertEquals(List.of(), drain(), "nothing is logged");
        ms.globalDirtyLogStart();
        drain();
        as.logClear(ram0, 0xf000, 0x12000);
        assertEquals(List.of("R logClear a@0x0+0x10000 0xf000+0x1000", "R logClear a@0x20000+0x20000 0x20000+0x1000"),
                drain());
        as.logClear(ram1, 0, 0x10000);
        assertEquals(List.of("R logClear b@0x10000+0x10000 0x0+0x10000"), drain());
    }

    /**
     * logClear runs on the migration thread while listeners come and go (a device plugged
     * during a migration): it neither fails nor waits for the memory system's lock.
     */
    @Test
    void logClearWhileListenersComeAndGo() throws Exception {
        ms.globalDirtyLogStart();
        java.util.concurrent.atomic.AtomicBoolean stop = new java.util.concurrent.atomic.AtomicBoolean();
        java.util.concurrent.atomic.AtomicReference<Throwable> failure = new java.util.concurrent.atomic.AtomicReference<>();
        Thread churn = Thread.ofPlatform().start(() -> {
            try {
                for (int i = 0; !stop.get(); i++) {
                    MemoryListener l = new RecordingListener.PerSection("L" + i, i % 3,
                            java.util.Collections.synchronizedList(new ArrayList<>()));
                    as.registerListener(l);
                    as.unregisterListener(l);
                }
            } catch (Throwable e) {
                failure.set(e);
            }
        });
        try {
            long end = System.nanoTime() + 300_000_000L;
            ms.begin(); // the clears must not need the lock this thread holds...
            try {
                while (System.nanoTime() < end && failure.get() == null) {
                    as.logClear(ram0, 0, 256 << 10);
                }
            } finally {
                ms.commit();
            }
            // ...nor the one the churn takes.
            end = System.nanoTime() + 300_000_000L;
            while (System.nanoTime() < end && failure.get() == null) {
                as.logClear(ram0, 0, 256 << 10);
            }
        } finally {
            stop.set(true);
            churn.join();
        }
        assertNull(failure.get());
    }

    @Test
    void unregisterStopsLoggingAndDeletesEverySection() {
        RecordingListener p = listener("P", 0);
        RecordingListener q = listener("Q", 1);
        as.registerListener(p);
        as.registerListener(q);
        ms.globalDirtyLogStart();
        drain();
        as.unregisterListener(p);
        assertEquals(List.of("P begin", "P logStop " + A + " " + MIG + "->0", "P del " + A, "P del " + IO,
                "P commit", "P logGlobalStop"), drain());
        root.addSubregion(0xc0000, b);
        ms.globalDirtyLogSync(false);
        for (String event : drain()) {
            assertTrue(event.startsWith("Q "), event);
        }
        as.unregisterListener(p); // not registered: nothing
        assertEquals(List.of(), drain());
        as.registerListener(p); // and it may come back
        assertEquals(List.of("P logGlobalStart", "P begin", "P add " + A, "P logStart " + A + " 0->" + MIG,
                "P add " + IO, "P add " + B, "P logStart " + B + " 0->" + MIG, "P commit"), drain());

        ms.close();
        assertEquals(List.of("P begin", "P logStop " + A + " " + MIG + "->0", "P del " + A, "P del " + IO,
                "P logStop " + B + " " + MIG + "->0", "P del " + B, "P commit", "P logGlobalStop",
                "Q begin", "Q logStop " + A + " " + MIG + "->0", "Q del " + A, "Q del " + IO,
                "Q logStop " + B + " " + MIG + "->0", "Q del " + B, "Q commit", "Q logGlobalStop"), drain());
    }

    @Test
    void oneTransactionOverTwoAddressSpacesIsOnePassPerListener() {
        MemoryRegion ioRoot = ms.container("io-root", 0x10000);
        AddressSpace ioSpace = ms.addressSpace("io", ioRoot);
        RecordingListener mem = listener("mem", 0);
        RecordingListener port = listener("port", 0);
        as.registerListener(mem);
        ioSpace.registerListener(port);
        drain();
        MemoryRegion serial = ms.ioRegion("serial", 8 << 10, NO_IO);
        long commits = ms.topologyCommits();
        ms.transaction(() -> {
            root.addSubregion(0xc0000, b);
            ioRoot.addSubregion(0x2000, serial);
        });
        assertEquals(commits + 1, ms.topologyCommits());
        assertEquals(List.of("mem begin", "port begin", "mem nop " + A, "mem nop " + IO, "mem add " + B,
                "port add serial@0x2000+0x2000", "mem commit", "port commit"), drain());
        assertEquals("io", ioSpace.flatView().sections().getFirst().addressSpace());
    }
}
