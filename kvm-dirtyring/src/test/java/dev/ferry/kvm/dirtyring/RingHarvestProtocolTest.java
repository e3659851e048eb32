package dev.ferry.kvm.dirtyring;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.api.DirtyTrackerException;
import dev.ferry.kvm.KvmDirtyRing;

import java.lang.foreign.Arena;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The harvest protocol ({@link KvmDirtyRing#harvest} + {@link DirtyRings}) against
 * {@link SimulatedKernel}: producer threads play vCPUs pushing entries the way KVM does, a reaper
 * thread and the producers themselves (on "ring full") reap concurrently. Each producer pushes its
 * own sequence numbers as offsets (slot = vCPU), so the sink can check that every entry arrives
 * exactly once and in ring order.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class RingHarvestProtocolTest {

    private SimulatedKernel kernel;

    @AfterEach
    void close() {
        if (kernel != null) {
            kernel.close();
        }
    }

    /** Checks per-vCPU sequences: each entry once, in order. Called under the reap lock. */
    private static final class SequenceSink implements GfnSink {
        final long[] next;
        String error;
        long flushes;

        SequenceSink(int vcpus) {
            next = new long[vcpus];
        }

        @Override
        public void dirty(int slot, long offset) {
            if (error == null && offset != next[slot]) {
                error = "vCPU " + slot + ": expected entry " + next[slot] + ", got " + offset
                        + (offset < next[slot] ? " (reported twice)" : " (entries lost)");
            }
            next[slot] = offset + 1;
        }

        @Override
        public void flush() {
            flushes++;
        }
    }

    @Test
    void concurrentProducersAndReapersLoseNothingAndReportNothingTwice() throws Exception {
        int vcpus = 4;
        int perVcpu = 300_000;
        kernel = new SimulatedKernel(vcpus, 1024, 576);
        SequenceSink sink = new SequenceSink(vcpus);
        ReentrantLock lock = new ReentrantLock();
        DirtyRings rings = new DirtyRings(kernel, lock, sink);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        AtomicBoolean producing = new AtomicBoolean(true);
        long[] fullExits = new long[vcpus];

        Thread reaper = Thread.ofPlatform().name("reaper").start(() -> {
            try {
                while (producing.get()) {
                    rings.reap();
                    LockSupport.parkNanos(50_000);
                }
            } catch (Throwable t) {
                failure.compareAndSet(null, t);
            }
        });
        List<Thread> producers = new ArrayList<>();
        for (int v = 0; v < vcpus; v++) {
            int vcpu = v;
            producers.add(Thread.ofPlatform().name("vcpu-" + v).start(() -> {
                try {
                    KvmDirtyRing ring = kernel.sim(vcpu).ring;
                    for (long seq = 0; seq < perVcpu; seq++) {
                        // KVM checks the soft limit before entering the guest: exit and reap.
                        while (kernel.softFull(vcpu)) {
                            fullExits[vcpu]++;
                            rings.ringFull(ring, vcpu);
                        }
                        if (!kernel.push(vcpu, vcpu, seq)) {
                            throw new AssertionError("vCPU " + vcpu + ": ring overflowed");
                        }
                    }
                } catch (Throwable t) {
                    failure.compareAndSet(null, t);
                }
            }));
        }
        for (Thread t : producers) {
            t.join();
        }
        producing.set(false);
        reaper.join();
        if (failure.get() != null) {
            throw new AssertionError("a thread failed", failure.get());
        }
        rings.reap();
        lock.lock();
        try {
            assertNull(sink.error, sink.error);
            for (int v = 0; v < vcpus; v++) {
                assertEquals(perVcpu, sink.next[v], "entries of vCPU " + v);
                assertEquals(kernel.sim(v).dirtyIndex, kernel.sim(v).resetIndex, "every entry reset");
                assertEquals(perVcpu, kernel.sim(v).ring.harvested());
            }
        } finally {
            lock.unlock();
        }
        assertEquals((long) vcpus * perVcpu, rings.entries());
        assertTrue(rings.reaps() > 10, "reaps: " + rings.reaps());
    }

    @Test
    void entriesNotYetPublishedAreLeftForTheNextHarvest() {
        kernel = new SimulatedKernel(1, 1024, 64);
        SequenceSink sink = new SequenceSink(1);
        DirtyRings rings = new DirtyRings(kernel, new ReentrantLock(), sink);
        kernel.push(0, 0, 0);
        kernel.writeUnpublished(0, 0, 1); // slot and offset written, flags not yet DIRTY
        assertEquals(1, rings.reap());
        assertEquals(1, sink.next[0]);
        kernel.publish(0);
        assertEquals(1, rings.reap());
        assertEquals(2, sink.next[0]);
        assertEquals(2, kernel.sim(0).resetIndex);
        assertEquals(0, rings.reap(), "nothing new");
        assertEquals(2, kernel.resetCalls.get(), "no reset without entries, as QEMU");
    }

    @Test
    void theRingWrapsAroundManyTimes() {
        kernel = new SimulatedKernel(1, 1024, 64);
        SequenceSink sink = new SequenceSink(1);
        DirtyRings rings = new DirtyRings(kernel, new ReentrantLock(), sink);
        long seq = 0;
        for (int round = 0; round < 50; round++) {
            int n = 1 + (round * 37) % 900;
            for (int i = 0; i < n; i++) {
                assertTrue(kernel.push(0, 0, seq++));
            }
            assertEquals(n, rings.reap());
        }
        assertNull(sink.error, sink.error);
        assertEquals(seq, sink.next[0]);
    }

    @Test
    void aResetCountBelowTheHarvestIsAFailure() {
        kernel = new SimulatedKernel(2, 1024, 64);
        DirtyRings rings = new DirtyRings(kernel, new ReentrantLock(), new SequenceSink(2));
        for (int i = 0; i < 10; i++) {
            kernel.push(0, 0, i);
            kernel.push(1, 1, i);
        }
        kernel.shortBy = 3;
        DirtyTrackerException e = assertThrows(DirtyTrackerException.class, rings::reap);
        assertEquals("kvm-dirtyring: harvested 20 dirty ring entries but KVM_RESET_DIRTY_RINGS reset 17; the kernel's "
                + "rings and the tracker disagree (a ring that overflowed wraps over entries), so dirty pages may be "
                + "missing", e.getMessage());
    }

    @Test
    void aResetCountAboveTheHarvestIsAFailure() {
        kernel = new SimulatedKernel(1, 1024, 64);
        DirtyRings rings = new DirtyRings(kernel, new ReentrantLock(), new SequenceSink(1));
        kernel.push(0, 0, 0);
        kernel.claimExtra = 5;
        DirtyTrackerException e = assertThrows(DirtyTrackerException.class, rings::reap);
        assertTrue(e.getMessage().contains("harvested 1 dirty ring entries but KVM_RESET_DIRTY_RINGS reset 6"),
                e.getMessage());
    }

    @Test
    void aResetCutShortBySignalIsFinishedByTheNextCall() {
        kernel = new SimulatedKernel(2, 1024, 64);
        DirtyRings rings = new DirtyRings(kernel, new ReentrantLock(), new SequenceSink(2));
        for (int i = 0; i < 100; i++) {
            kernel.push(0, 0, i);
            kernel.push(1, 1, i);
        }
        kernel.resetLimitOnce = 30; // signal pending: the kernel stops early and returns what it reset
        assertEquals(200, rings.reap());
        assertEquals(2, rings.resets());
        assertEquals(100, kernel.sim(0).resetIndex);
        assertEquals(100, kernel.sim(1).resetIndex);
    }

    @Test
    void aFullExitWithNothingToHarvestIsAFailure() {
        kernel = new SimulatedKernel(1, 1024, 64);
        DirtyRings rings = new DirtyRings(kernel, new ReentrantLock(), new SequenceSink(1));
        KvmDirtyRing ring = kernel.sim(0).ring;
        DirtyTrackerException e = assertThrows(DirtyTrackerException.class, () -> rings.ringFull(ring, 3));
        assertEquals("kvm-dirtyring: vCPU 3 exited with KVM_EXIT_DIRTY_RING_FULL but its ring (1024 entries) held "
                + "nothing to harvest: the ring lost entries, so dirty pages are missing and the vCPU would exit for "
                + "ever; reap more often or use a larger dirty-ring-size", e.getMessage());
    }

    @Test
    void aFullExitAfterTheReaperTookTheEntriesIsFineOnceButNotTwice() {
        kernel = new SimulatedKernel(1, 1024, 64);
        DirtyRings rings = new DirtyRings(kernel, new ReentrantLock(), new SequenceSink(1));
        KvmDirtyRing ring = kernel.sim(0).ring;
        for (int i = 0; i < 960; i++) {
            kernel.push(0, 0, i);
        }
        assertTrue(kernel.softFull(0));
        assertEquals(960, rings.reap()); // the reaper thread got there first
        assertEquals(0, rings.ringFull(ring, 0), "the vCPU's own reap finds nothing, and that is fine");
        assertEquals(1, rings.fullExits());
        // KVM says full again, and nothing came out of the ring since: it lost its entries.
        DirtyTrackerException e = assertThrows(DirtyTrackerException.class, () -> rings.ringFull(ring, 0));
        assertTrue(e.getMessage().contains("held nothing to harvest since its previous full exit"), e.getMessage());
    }

    @Test
    void aCompletelyFullRingIsReportedAsOverflow() {
        kernel = new SimulatedKernel(2, 1024, 64);
        SequenceSink sink = new SequenceSink(2);
        DirtyRings rings = new DirtyRings(kernel, new ReentrantLock(), sink);
        for (int i = 0; i < 1024; i++) {
            assertTrue(kernel.push(1, 1, i));
        }
        assertFalse(kernel.push(1, 1, 1024));
        DirtyTrackerException e = assertThrows(DirtyTrackerException.class, rings::reap);
        assertEquals("kvm-dirtyring: the dirty ring of vCPU 1 was completely full (1024 entries): KVM went past its "
                + "soft limit and may have overwritten entries, so dirty pages may be missing; use a larger "
                + "dirty-ring-size", e.getMessage());
        assertEquals(1024, sink.next[1], "what was there was still marked");
        assertEquals(1024, kernel.sim(1).resetIndex, "and reset");
    }

    @Test
    void aRingThatWrapsOverHarvestedEntriesFailsTheResetCheck() {
        kernel = new SimulatedKernel(1, 1024, 64);
        // While the reap is harvesting (entries 0..9 flagged RESET, not yet reset), the kernel,
        // past full, wraps over entry 0 with a new DIRTY entry: the reset then stops at entry 0.
        GfnSink sink = (slot, offset) -> {
            if (offset == 9) {
                kernel.sim(0).dirtyIndex = 1024;
                kernel.pushOverwriting(0, 0, 5000);
            }
        };
        DirtyRings rings = new DirtyRings(kernel, new ReentrantLock(), sink);
        for (int i = 0; i < 10; i++) {
            kernel.push(0, 0, i);
        }
        DirtyTrackerException e = assertThrows(DirtyTrackerException.class, rings::reap);
        assertTrue(e.getMessage().contains("harvested 10 dirty ring entries but KVM_RESET_DIRTY_RINGS reset 0"),
                e.getMessage());
        assertEquals(DirtyRings.RESET_ATTEMPTS, rings.resets());
    }

    @Test
    void pendingAtLeastLooksAheadOfTheFetchIndex() {
        try (Arena arena = Arena.ofConfined()) {
            kernel = new SimulatedKernel(1, 1024, 64);
            KvmDirtyRing ring = kernel.sim(0).ring;
            assertFalse(ring.pendingAtLeast(1));
            for (int i = 0; i < 512; i++) {
                kernel.push(0, 0, i);
            }
            assertTrue(ring.pendingAtLeast(512));
            assertFalse(ring.pendingAtLeast(513));
            ring.harvest((s, o) -> { });
            assertFalse(ring.pendingAtLeast(1));
            assertThrows(IllegalArgumentException.class, () -> ring.pendingAtLeast(0));
            assertThrows(IllegalArgumentException.class, () -> KvmDirtyRing.over(arena.allocate(16 * 1000, 8)));
        }
    }
}
