package dev.ferry.machine;

import dev.ferry.machine.workload.Pattern;
import org.junit.jupiter.api.Test;

import java.util.Arrays;

import static dev.ferry.machine.Guests.MIB;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Pause, resume, throttle and pacing: behaviour with wide margins, not benchmarks. */
class RunControlTest {

    @Test
    void pauseStopsEveryWriteAndResumeContinues() {
        try (Machine m = Guests.soft(16 * MIB, 3, Guests.workload(Pattern.RANDOM, 0, 4096, 42))) {
            m.pause(); // before start: nothing to stop, must not hang
            m.start();
            Guests.awaitWrites(m, 2000);
            m.pause();
            byte[] before = Guests.copy(m.ram().host());
            long written = m.pagesWritten();
            Guests.sleep(200);
            assertEquals(written, m.pagesWritten(), "pages counted while paused");
            assertArrayEquals(before, Guests.copy(m.ram().host()), "RAM changed while paused");
            m.pause(); // pausing twice is harmless
            m.resume();
            Guests.awaitWrites(m, 2000);
            m.pause();
            assertFalse(Arrays.equals(before, Guests.copy(m.ram().host())), "RAM unchanged after resume");
            assertTrue(m.vcpuFailure().isEmpty());
        }
    }

    /**
     * Background preallocation (a destination's) keeps what was written meanwhile, faults the
     * rest in, and a machine closed while it runs waits for it before RAM is unmapped.
     */
    @Test
    void preallocationInTheBackgroundKeepsWhatIsWrittenAndStopsAtClose() {
        try (Machine m = Guests.soft(64 * MIB, 1, Guests.workload(Pattern.IDLE, 0, 4096, 1))) {
            m.ram().host().asSlice(0, 4096).fill((byte) 0x5a);
            m.ram().host().asSlice(63 * MIB, 4096).fill((byte) 0xa5);
            m.preallocateInBackground();
            m.preallocateInBackground(); // once is enough
            m.ram().host().asSlice(32 * MIB, 4096).fill((byte) 0x3c);
            long deadline = System.nanoTime() + 30_000_000_000L;
            while (m.preallocating() && System.nanoTime() < deadline) {
                Guests.sleep(5);
            }
            assertFalse(m.preallocating(), "64 MiB faulted in within 30 s");
            assertEquals((byte) 0x5a, m.ram().host().get(java.lang.foreign.ValueLayout.JAVA_BYTE, 4095));
            assertEquals((byte) 0x3c, m.ram().host().get(java.lang.foreign.ValueLayout.JAVA_BYTE, 32 * MIB + 17));
            assertEquals((byte) 0xa5, m.ram().host().get(java.lang.foreign.ValueLayout.JAVA_BYTE, 63 * MIB));
            assertEquals(0, m.ram().host().get(java.lang.foreign.ValueLayout.JAVA_BYTE, 16 * MIB));
        }
        Machine big = Guests.soft(512 * MIB, 1, Guests.workload(Pattern.IDLE, 0, 4096, 1));
        big.preallocateInBackground();
        big.close(); // joins the preallocation thread: no fault on unmapped RAM
        assertFalse(big.preallocating());
    }

    @Test
    void closeStopsARunningOrPausedMachine() {
        Machine m = Guests.soft(4 * MIB, 2, Guests.workload(Pattern.SEQUENTIAL, 0, 1, 1));
        m.start();
        Guests.awaitWrites(m, 100);
        m.pause();
        m.close();
        m.close(); // idempotent
        assertThrows(IllegalStateException.class, m::start);
    }

    /**
     * An interrupted closer still waits for every vCPU thread before guest RAM is unmapped (a
     * thread left running would touch freed memory), and keeps its interrupt.
     */
    @Test
    void anInterruptedCloseStillWaitsForTheVcpus() {
        Machine m = Guests.soft(4 * MIB, 3, Guests.workload(Pattern.RANDOM, 0, 4096, 7));
        m.start();
        Guests.awaitWrites(m, 100);
        Thread.currentThread().interrupt();
        m.close();
        assertTrue(Thread.interrupted(), "the interrupt is kept for the caller");
        assertTrue(Thread.getAllStackTraces().keySet().stream()
                .noneMatch(t -> t.getName().startsWith("vcpu-") && t.isAlive()), "no vCPU thread outlives close");
    }

    @Test
    void throttleCutsTheWriteRate() {
        try (Machine m = Guests.soft(16 * MIB, 1, Guests.workload(Pattern.RANDOM, 0, 64, 7))) {
            m.start();
            Guests.awaitWrites(m, 5000); // past first touches
            long free = 0;
            long throttled = 0;
            // Alternate, and compare the best window of each, so a stall of the host skews neither.
            for (int i = 0; i < 3; i++) {
                m.setThrottle(0);
                free = Math.max(free, pagesIn(m, 150));
                m.setThrottle(80);
                Guests.sleep(30); // let a throttle slice begin
                throttled = Math.max(throttled, pagesIn(m, 150));
            }
            assertEquals(80, m.throttle());
            assertTrue(free > 0);
            assertTrue(throttled < free / 2, "80% throttle: " + throttled + " pages vs " + free + " unthrottled");
            assertTrue(throttled > 0, "a throttled vCPU still runs");
            m.setThrottle(0);
            assertThrows(IllegalArgumentException.class, () -> m.setThrottle(100));
            assertThrows(IllegalArgumentException.class, () -> m.setThrottle(-1));
        }
    }

    /**
     * A guest that paces itself (most of its time asleep between writes) is throttled by wall
     * time, as QEMU's throttle timer is: at 90% it keeps about a tenth of its rate. (Counting only
     * the time spent writing left such a guest a fifth of its rate at 99%, and a migration of it
     * over a slow link never converged.)
     */
    @Test
    void throttleCutsAPacedGuestByWallTime() {
        try (Machine m = Guests.soft(16 * MIB, 1, Guests.workload(Pattern.RANDOM, 32, 4096, 9))) {
            m.start();
            Guests.awaitWrites(m, 2000);
            long free = 0;
            long throttled = Long.MAX_VALUE;
            for (int i = 0; i < 2; i++) {
                m.setThrottle(0);
                free = Math.max(free, pagesIn(m, 400));
                m.setThrottle(90);
                Guests.sleep(50);
                throttled = Math.min(throttled, pagesIn(m, 400));
            }
            // 32 MiB/s is 8192 pages/s: about 3277 in 400 ms free, about 328 at 90%.
            assertTrue(free > 2000, "paced at 32 MiB/s: " + free);
            assertTrue(throttled < free / 4, "90% throttle: " + throttled + " pages vs " + free + " unthrottled");
        }
    }

    /** Time run unthrottled is not owed as sleep once a throttle is set (it once was: seconds of stall). */
    @Test
    void throttleSetAfterALongRunTakesEffectPromptly() {
        try (Machine m = Guests.soft(8 * MIB, 2, Guests.workload(Pattern.RANDOM, 0, 64, 8))) {
            m.start();
            Guests.sleep(600);
            m.setThrottle(50);
            Guests.sleep(50);
            assertTrue(pagesIn(m, 200) > 0, "the vCPUs stalled after the throttle was set");
            long t0 = System.nanoTime();
            m.pause();
            long ms = (System.nanoTime() - t0) / 1_000_000;
            assertTrue(ms < 500, "pause took " + ms + " ms under a 50% throttle");
        }
    }

    @Test
    void pacingHoldsTheTargetRate() {
        double mibps = 40; // 10240 pages/s over both vCPUs
        try (Machine m = Guests.soft(16 * MIB, 2, Guests.workload(Pattern.RANDOM, mibps, 4096, 3))) {
            m.start();
            Guests.awaitWrites(m, 1000);
            long pages = pagesIn(m, 600);
            double rate = pages * 4096.0 / MIB / 0.6;
            assertTrue(rate > mibps * 0.6 && rate < mibps * 1.4, "paced at " + rate + " MiB/s, target " + mibps);
        }
    }

    @Test
    void pausedTimeDoesNotEarnPacingCredit() {
        double mibps = 20;
        try (Machine m = Guests.soft(16 * MIB, 1, Guests.workload(Pattern.SEQUENTIAL, mibps, 1, 3))) {
            m.start();
            Guests.awaitWrites(m, 500);
            m.pause();
            Guests.sleep(300);
            m.resume();
            // No burst to catch up the paused time: the rate right after resume stays near target.
            long pages = pagesIn(m, 200);
            double rate = pages * 4096.0 / MIB / 0.2;
            assertTrue(rate < mibps * 1.6, "after resume: " + rate + " MiB/s, target " + mibps);
        }
    }

    private static long pagesIn(Machine m, long millis) {
        long before = m.pagesWritten();
        Guests.sleep(millis);
        return m.pagesWritten() - before;
    }
}
