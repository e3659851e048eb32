package dev.ferry.memory;

import dev.ferry.api.DirtyClient;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Seed 003: inside an open transaction the transaction's own thread sees its uncommitted
 * topology, listeners see nothing until the outermost commit (and then one pass), and other
 * threads keep seeing the last committed view without waiting for the memory system's lock.
 */
class TransactionVisibilityTest {

    private final List<String> log = Collections.synchronizedList(new ArrayList<>());
    private MemorySystem ms;
    private MemfdRamBlock ram0;
    private MemfdRamBlock ram1;
    private MemoryRegion root;
    private MemoryRegion a;
    private MemoryRegion b;
    private AddressSpace as;
    private ExecutorService other;

    @BeforeEach
    void setUp() {
        ms = new MemorySystem();
        ram0 = ms.allocateRam("ram0", 64 << 10);
        ram1 = ms.allocateRam("ram1", 64 << 10);
        root = ms.container("root", 1 << 20);
        a = ms.ramRegion("a", ram0);
        b = ms.ramRegion("b", ram1);
        root.addSubregion(0, a);
        as = ms.addressSpace("memory", root);
        as.registerListener(new RecordingListener.PerSection("R", 0, log));
        log.clear();
        other = Executors.newSingleThreadExecutor();
    }

    @AfterEach
    void tearDown() {
        other.shutdownNow();
        while (ms.transactionDepth() > 0) {
            ms.commit(); // a failed test must not leave the lock held
        }
        ms.close();
    }

    /** @return the other thread's view, failing if it blocks (flatView must not take the lock) */
    private FlatView viewFromOtherThread() throws Exception {
        Future<FlatView> f = other.submit(as::flatView);
        try {
            return f.get(5, TimeUnit.SECONDS);
        } catch (TimeoutException e) {
            throw new AssertionError("flatView() blocked on another thread during a transaction", e);
        }
    }

    @Test
    void uncommittedTopologyIsVisibleOnlyToTheTransactionThread() throws Exception {
        FlatView committed = as.flatView();
        long commits = ms.topologyCommits();

        ms.begin();
        assertSame(committed, as.flatView(), "no change pending yet: the committed view");
        root.addSubregion(0x40000, b);

        FlatView mine = as.flatView();
        assertNotNull(mine.lookup(0x40000));
        assertEquals("b", mine.lookup(0x40000).region());
        assertSame(mine, as.flatView(), "the uncommitted view is rendered once per change");
        assertEquals(List.of(), log);
        assertEquals(commits, ms.topologyCommits());

        FlatView theirs = viewFromOtherThread();
        assertSame(committed, theirs);
        assertNull(theirs.lookup(0x40000));
        assertEquals(0, other.submit(ms::transactionDepth).get(5, TimeUnit.SECONDS));

        // A nested transaction: still nothing for listeners, and the view follows every change.
        ms.begin();
        a.setReadOnly(true);
        b.setAddress(0x80000);
        ms.commit();
        FlatView nested = as.flatView();
        assertTrue(nested.lookup(0).readOnly());
        assertNull(nested.lookup(0x40000));
        assertEquals("b", nested.lookup(0x80000).region());
        assertEquals(List.of(), log);
        assertEquals(commits, ms.topologyCommits());
        assertSame(committed, viewFromOtherThread());

        ms.commit();
        assertEquals(commits + 1, ms.topologyCommits());
        assertEquals(List.of("R begin", "R del a@0x0+0x10000", "R add a@0x0+0x10000", "R add b@0x80000+0x10000",
                "R commit"), log);
        FlatView after = viewFromOtherThread();
        assertSame(as.flatView(), after);
        assertTrue(after.lookup(0).readOnly());
        assertEquals("b", after.lookup(0x80000).region());
    }

    /**
     * A device's post-load reads guest memory through the address space in the middle of a
     * batched load: it sees the regions mapped so far, other threads do not, and nothing is
     * rendered or told to listeners until the one commit.
     */
    @Test
    void readsInsideATransactionSeeTheLoadedTopologyWithoutARender() throws Exception {
        try (Arena arena = Arena.ofConfined()) {
            ram1.host().set(ValueLayout.JAVA_LONG, 8, 0x5eed_cafeL);
            long renders = ms.flatViewRenders();
            long commits = ms.topologyCommits();
            ms.begin();
            root.addSubregion(0x40000, b);
            MemorySegment word = arena.allocate(8);
            as.read(0x40008, word);
            assertEquals(0x5eed_cafeL, word.get(ValueLayout.JAVA_LONG, 0), "the transaction's thread reads the new BAR");
            b.setAddress(0x80000);
            as.read(0x80008, word);
            assertEquals(0x5eed_cafeL, word.get(ValueLayout.JAVA_LONG, 0));
            word.set(ValueLayout.JAVA_LONG, 0, 7);
            as.write(0x80010, word);
            assertEquals(7, ram1.host().get(ValueLayout.JAVA_LONG, 0x10));
            assertThrows(ExecutionException.class, () -> other.submit(() -> {
                try (Arena a2 = Arena.ofConfined()) {
                    as.read(0x80008, a2.allocate(8)); // unmapped in the committed view
                }
            }).get(5, TimeUnit.SECONDS));
            assertEquals(renders, ms.flatViewRenders(), "reads walk the graph: no render before the commit");
            assertEquals(List.of(), log);
            ms.commit();
            assertEquals(renders + 1, ms.flatViewRenders());
            assertEquals(commits + 1, ms.topologyCommits());
            assertEquals(List.of("R begin", "R nop a@0x0+0x10000", "R add b@0x80000+0x10000", "R commit"), log);
        }
    }

    @Test
    void anotherThreadChangingTheTopologyWaitsForTheCommit() throws Exception {
        ms.begin();
        root.addSubregion(0x40000, b);
        CompletableFuture<Void> change = CompletableFuture.runAsync(() -> a.setReadOnly(true), other);
        Thread.sleep(100);
        assertFalse(change.isDone(), "a change from another thread must wait for the open transaction");
        assertFalse(as.flatView().lookup(0).readOnly());
        ms.commit();
        change.get(5, TimeUnit.SECONDS);
        assertTrue(as.flatView().lookup(0).readOnly());
        assertEquals(2, log.stream().filter(e -> e.endsWith("begin")).count(), "one pass each: " + log);
    }

    @Test
    void uncommittedViewFollowsGlobalDirtyLogChanges() {
        ms.begin();
        root.addSubregion(0x40000, b);
        assertEquals(0, as.flatView().lookup(0x40000).dirtyLogMask());
        ms.globalDirtyLogStart();
        assertEquals(DirtyClient.MIGRATION.bit(), as.flatView().lookup(0x40000).dirtyLogMask(), as.flatView().toString());
        assertEquals(DirtyClient.MIGRATION.bit(), as.flatView().lookup(0).dirtyLogMask());
        assertEquals(List.of("R logGlobalStart"), log);
        ms.commit();
        assertEquals(DirtyClient.MIGRATION.bit(), as.flatView().lookup(0x40000).dirtyLogMask());
        assertEquals(1, log.stream().filter(e -> e.endsWith("begin")).count(), "one pass: " + log);
    }

    @Test
    void accessesInsideTheTransactionUseItsTopology() {
        // A device loading its state in a batched load writes to memory it has just mapped.
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(8);
            buf.set(ValueLayout.JAVA_LONG_UNALIGNED, 0, 0x1122334455667788L);
            ms.begin();
            try {
                root.addSubregion(0x40000, b);
                as.write(0x40008, buf);
                MemorySegment back = arena.allocate(8);
                as.read(0x40008, back);
                assertEquals(0x1122334455667788L, back.get(ValueLayout.JAVA_LONG_UNALIGNED, 0));
            } finally {
                ms.commit();
            }
            assertEquals(0x1122334455667788L, ram1.host().get(ValueLayout.JAVA_LONG_UNALIGNED, 8));

            // And the committed view applies to everyone else meanwhile.
            ms.begin();
            try {
                root.removeSubregion(b);
                assertThrows(IllegalArgumentException.class, () -> as.write(0x40000, buf));
            } finally {
                ms.commit();
            }
        }
    }

    @Test
    void otherThreadsReadTheCommittedViewWhileATransactionIsOpen() throws Exception {
        try (Arena arena = Arena.ofShared()) {
            MemorySegment buf = arena.allocate(8);
            ram0.host().set(ValueLayout.JAVA_LONG_UNALIGNED, 0, 42);
            ms.begin();
            try {
                root.removeSubregion(a);
                Future<Long> read = other.submit(() -> {
                    as.read(0, buf);
                    return buf.get(ValueLayout.JAVA_LONG_UNALIGNED, 0);
                });
                assertEquals(42L, read.get(5, TimeUnit.SECONDS));
            } finally {
                ms.commit();
            }
        }
    }
}
