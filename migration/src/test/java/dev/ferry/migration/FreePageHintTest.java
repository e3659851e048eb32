package dev.ferry.migration;

import dev.ferry.machine.Machine;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import dev.ferry.memory.MemfdRamBlock;
import dev.ferry.migration.bootstrap.TrackedMachine;
import dev.ferry.migration.channel.Channels;
import dev.ferry.migration.channel.Connection;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import static dev.ferry.migration.TestSupport.MIB;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Seed 002: free-page hints from another thread race the send loop of a real migration. The
 * hinted memory is zero and never written on either side, so the migration must complete and
 * verify, and the dirty page count must never go below zero.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class FreePageHintTest {

    private static final long RAM = 16 * MIB;

    @Test
    void hintsRacingTheSendLoop() throws Exception {
        // The guest writes the lower half; the upper half is free memory, all zeros.
        Workload w = TestSupport.workload(Pattern.RANDOM, 10, 21).withWorkingSet(0, RAM / 2);
        try (TrackedMachine src = TestSupport.guest(RAM, 1, w)) {
            Machine m = src.machine();
            m.ram().host().asSlice(0, RAM / 2).fill((byte) 0x44);
            MemfdRamBlock block = m.ram();
            Connection[] pair = Channels.inProcessPair();
            CompletableFuture<Incoming.Result> dst = new CompletableFuture<>();
            Thread.ofPlatform().daemon().start(() -> {
                try (Connection c = pair[1]) {
                    dst.complete(TestSupport.incoming(RAM).receive(c));
                } catch (Throwable e) {
                    dst.completeExceptionally(e);
                }
            });
            // 8 MiB of data at 32 MiB/s: the free half is sent after a quarter second of bursts.
            Migration mig = new Migration(src, pair[0], TestSupport.params().withMaxBandwidth(32 * MIB));
            AtomicLong dropped = new AtomicLong();
            AtomicLong hints = new AtomicLong();
            AtomicLong minRemaining = new AtomicLong(Long.MAX_VALUE);
            AtomicReference<Throwable> hinterFailure = new AtomicReference<>();
            Thread hinter = Thread.ofPlatform().name("test-hinter").start(() -> {
                Random random = new Random(2);
                try {
                    while (!mig.stats().status().finished()) {
                        // Unaligned ranges too: only whole pages inside them may be dropped.
                        long offset = RAM / 2 + random.nextLong(RAM / 2 - 4096);
                        long length = Math.min(1 + random.nextLong(64 * 4096), RAM - offset);
                        dropped.addAndGet(mig.hintFree(block, offset, length));
                        hints.incrementAndGet();
                        minRemaining.accumulateAndGet(mig.ram().remainingPages(), Math::min);
                        if ((hints.get() & 15) == 0) {
                            Thread.onSpinWait();
                        }
                    }
                } catch (Throwable e) {
                    hinterFailure.set(e);
                }
            });
            MigrationStats stats = mig.run(s -> minRemaining.accumulateAndGet(s.remaining(), Math::min));
            hinter.join(10_000);
            assertNull(hinterFailure.get(), () -> "the hinter failed: " + hinterFailure.get());
            assertEquals(MigrationStatus.COMPLETED, stats.status(), stats.error());
            assertTrue(minRemaining.get() >= 0, "remaining went to " + minRemaining.get());
            assertEquals(0, mig.ram().remainingPages());
            assertTrue(hints.get() > 0);
            assertTrue(dropped.get() > 0, "some hints dropped dirty pages (" + hints.get() + " hints)");
            long pages = RAM / 4096;
            assertTrue(stats.normal() + stats.duplicate() + dropped.get() >= pages, "every page sent or dropped: " + stats);
            assertTrue(stats.normal() + stats.duplicate() < pages + 4096, stats.toString());
            Incoming.Result r = dst.get(20, TimeUnit.SECONDS);
            try (Machine d = r.machine()) {
                assertTrue(r.verified());
                assertEquals(stats.normal() + stats.duplicate(), r.pages());
                MemorySegment zeros = Arena.ofAuto().allocate(RAM / 2);
                assertEquals(-1, d.ram().host().asSlice(RAM / 2, RAM / 2).mismatch(zeros), "free memory stays zero");
            }
        }
    }

    @Test
    void hintsAreCheckedAndCountWholePagesOnly() throws Exception {
        try (TrackedMachine src = TestSupport.guest(4 * MIB, 1, TestSupport.workload(Pattern.IDLE, 0, 1))) {
            Migration mig = new Migration(src, Channels.inProcessPair()[0], TestSupport.params());
            MemfdRamBlock block = src.machine().ram();
            // Before setup nothing is dirty: nothing to drop.
            assertEquals(0, mig.hintFree(block, 0, 4 * MIB));
            assertThrows(IndexOutOfBoundsException.class, () -> mig.hintFree(block, -1, 10));
            assertThrows(IndexOutOfBoundsException.class, () -> mig.hintFree(block, 4 * MIB - 4096, 8192));
            assertThrows(IndexOutOfBoundsException.class, () -> mig.hintFree(block, 0, -4096));
            try (TrackedMachine other = TestSupport.guest(2 * MIB, 1, TestSupport.workload(Pattern.IDLE, 0, 1))) {
                assertThrows(IllegalArgumentException.class, () -> mig.hintFree(other.machine().ram(), 0, 8192));
            }
        }
    }
}
