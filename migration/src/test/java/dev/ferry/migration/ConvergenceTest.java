package dev.ferry.migration;

import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import dev.ferry.migration.bootstrap.TrackedMachine;
import dev.ferry.migration.channel.Channels;
import dev.ferry.migration.channel.Connection;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

import static dev.ferry.migration.TestSupport.MIB;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Precopy's decisions as pure functions, with QEMU's defaults, and auto-converge at work. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class ConvergenceTest {

    private static final long MS = 1_000_000L;

    @Test
    void expectedDowntime() {
        assertEquals(5 * MS + 1_000 * MS, Convergence.expectedDowntimeNanos(MIB, MIB, 5 * MS));
        assertEquals(5 * MS + 500 * MS, Convergence.expectedDowntimeNanos(4 * MIB, 8 * MIB, 5 * MS));
        assertEquals(7 * MS, Convergence.expectedDowntimeNanos(0, 8 * MIB, 7 * MS), "nothing left: the fixed cost");
        // No bandwidth measured yet: unknown, unless there is nothing to send.
        assertEquals(Long.MAX_VALUE, Convergence.expectedDowntimeNanos(4096, 0, 5 * MS));
        assertEquals(Long.MAX_VALUE, Convergence.expectedDowntimeNanos(4096, -1, 5 * MS));
        assertEquals(5 * MS, Convergence.expectedDowntimeNanos(0, 0, 5 * MS));
        // Monotonic in what is left and in the bandwidth.
        assertTrue(Convergence.expectedDowntimeNanos(2 * MIB, 1e9, 0) > Convergence.expectedDowntimeNanos(MIB, 1e9, 0));
        assertTrue(Convergence.expectedDowntimeNanos(MIB, 1e8, 0) > Convergence.expectedDowntimeNanos(MIB, 1e9, 0));
    }

    @Test
    void switchoverWhenTheEstimateFitsTheLimit() {
        long limit = 300 * MS; // QEMU's downtime-limit default
        assertTrue(Convergence.canSwitchover(299 * MS, limit));
        assertTrue(Convergence.canSwitchover(300 * MS, limit));
        assertFalse(Convergence.canSwitchover(300 * MS + 1, limit));
        assertFalse(Convergence.canSwitchover(Long.MAX_VALUE, limit));
        assertTrue(Convergence.canSwitchover(0, 1));
    }

    @Test
    void anotherPassPaysWhileWhatTheGuestDirtiesMeanwhileLeavesHalfTheDowntime() {
        double gibps = 1 << 30;
        // An idle guest: the rest is sent with it running, and switchover costs its fixed part.
        assertTrue(Convergence.anotherPassPays(200 * MIB, gibps, 0, 10 * MS));
        // 100 MiB/s against 1 GiB/s: a tenth of what is left comes back.
        assertTrue(Convergence.anotherPassPays(200 * MIB, gibps, 100 * MIB, 10 * MS));
        // Faster than half the bandwidth, the pass leaves more than half of what is left.
        assertFalse(Convergence.anotherPassPays(200 * MIB, gibps, 600 * MIB, 0));
        assertFalse(Convergence.anotherPassPays(200 * MIB, gibps, 2 * gibps, 10 * MS));
        // Little left: the fixed cost is most of the downtime, and a pass cannot halve it.
        assertFalse(Convergence.anotherPassPays(4 * MIB, gibps, 0, 10 * MS));
        assertFalse(Convergence.anotherPassPays(0, gibps, 0, 10 * MS), "nothing left");
        assertFalse(Convergence.anotherPassPays(200 * MIB, 0, 0, 10 * MS), "no bandwidth measured");
        assertFalse(Convergence.anotherPassPays(200 * MIB, gibps, Double.POSITIVE_INFINITY, 10 * MS));
    }

    @Test
    void anIdleGuestIsStoppedOnlyOnceItsFirstPassIsSent() throws Exception {
        // 32 MiB of data over a 16 MiB/s link with a 6 s limit: the estimate fits as soon as the
        // bandwidth is measured, when QEMU would stop the guest with ~2 s of its first pass left.
        try (TrackedMachine src = TestSupport.guest(32 * MIB, 1, TestSupport.workload(Pattern.IDLE, 0, 33))) {
            src.machine().ram().host().fill((byte) 0x5a);
            Connection[] pair = Channels.inProcessPair();
            CompletableFuture<Incoming.Result> dst = CompletableFuture.supplyAsync(() -> {
                try (Connection c = pair[1]) {
                    return TestSupport.incoming(32 * MIB).receive(c);
                } catch (Exception e) {
                    throw new IllegalStateException(e);
                }
            });
            AtomicLong remainingAtSwitchover = new AtomicLong(-1);
            MigrationStats stats = new Migration(src, pair[0], TestSupport.params().withMaxBandwidth(16 * MIB)
                    .withDowntimeLimit(Duration.ofSeconds(6)).withTimeout(Duration.ofSeconds(30))).run(s -> {
                if (s.status() == MigrationStatus.ACTIVE) {
                    remainingAtSwitchover.set(s.remaining());
                }
            });
            assertEquals(MigrationStatus.COMPLETED, stats.status(), stats.error());
            assertTrue(remainingAtSwitchover.get() >= 0 && remainingAtSwitchover.get() < MIB,
                    "the guest was stopped with " + remainingAtSwitchover.get() + " bytes left to send: " + stats);
            assertTrue(stats.iterations() >= 2, "the first pass, and the one that found nothing dirty: " + stats);
            Incoming.Result r = dst.get(30, TimeUnit.SECONDS);
            assertTrue(r.verified());
            r.machine().close();
        }
    }

    @Test
    void cannotConvergeOnlyAtTheHighestThrottleWithNoPassSmallerThanTheLast() {
        assertTrue(Convergence.cannotConverge(99, 99, 1000, 1000));
        assertTrue(Convergence.cannotConverge(99, 99, 1001, 1000));
        assertFalse(Convergence.cannotConverge(99, 99, 999, 1000), "the dirty set still shrinks");
        assertFalse(Convergence.cannotConverge(90, 99, 5000, 1000), "the throttle can still rise");
    }

    @Test
    void aGuestThatOutrunsTheLinkAtTheHighestThrottleFailsEarlyAndSaysWhy() throws Exception {
        // 2 MiB rewritten at 64 MiB/s over a 2 MiB/s link, the throttle capped at 20%: every pass
        // finds the whole working set dirty again, for ever.
        Workload w = TestSupport.workload(Pattern.RANDOM, 64, 33).withWorkingSet(0, 2 * MIB);
        try (TrackedMachine src = TestSupport.guest(16 * MIB, 1, w)) {
            src.machine().ram().host().asSlice(0, 2 * MIB).fill((byte) 1);
            Connection[] pair = Channels.inProcessPair();
            CompletableFuture<Void> dst = destinationThatMayFail(pair[1]);
            MigrationParameters d = TestSupport.params();
            MigrationParameters params = new MigrationParameters(2 * MIB, d.downtimeLimit(), Duration.ofSeconds(50),
                    true, d.throttleTrigger(), 20, 10, 20, d.clearBitmapShift());
            MigrationStats stats = new Migration(src, pair[0], params).run(s -> { });
            assertEquals(MigrationStatus.FAILED, stats.status(), stats.toString());
            assertTrue(stats.error().startsWith("did not converge: at the highest throttle (20%) the guest still "
                    + "dirtied"), stats.error());
            assertTrue(stats.error().contains("raise --max-bandwidth"), stats.error());
            assertEquals(20, stats.throttlePercent(), "the summary keeps the throttle reached");
            assertTrue(stats.totalTimeMs() < 30_000, "gave up early: " + stats.totalTimeMs() + " ms");
            assertTrue(src.machine().vcpuFailure().isEmpty(), "the source guest runs on");
            assertEquals(0, src.machine().throttle());
            dst.get(20, TimeUnit.SECONDS);
        }
    }

    @Test
    void dirtyRateTriggerAtFiftyPercent() {
        // QEMU's throttle-trigger-threshold: 50% of what was sent.
        assertTrue(Convergence.dirtyRateTooHigh(51, 100, 50));
        assertFalse(Convergence.dirtyRateTooHigh(50, 100, 50));
        assertFalse(Convergence.dirtyRateTooHigh(0, 0, 50));
        assertTrue(Convergence.dirtyRateTooHigh(1, 0, 50), "dirtying while sending nothing");
        assertTrue(Convergence.dirtyRateTooHigh(101, 100, 100));
        assertFalse(Convergence.dirtyRateTooHigh(100, 100, 100));
        // Large periods do not overflow: 1 TiB sent.
        assertFalse(Convergence.dirtyRateTooHigh(1L << 39, 1L << 40, 50));
        assertTrue(Convergence.dirtyRateTooHigh((1L << 39) + 1, 1L << 40, 50));
    }

    @Test
    void throttleStepsAsQemu() {
        // cpu-throttle-initial 20, cpu-throttle-increment 10, max-cpu-throttle 99.
        int t = 0;
        int[] expected = {20, 30, 40, 50, 60, 70, 80, 90, 99, 99};
        for (int e : expected) {
            t = Convergence.nextThrottle(t, 20, 10, 99);
            assertEquals(e, t);
        }
        assertEquals(50, Convergence.nextThrottle(0, 80, 10, 50), "the initial step is capped too");
        assertEquals(50, Convergence.nextThrottle(45, 20, 10, 50));
        MigrationParameters d = MigrationParameters.defaults();
        assertEquals(50, d.throttleTrigger());
        assertEquals(20, d.throttleInitial());
        assertEquals(10, d.throttleIncrement());
        assertEquals(99, d.throttleMax());
        assertEquals(Duration.ofMillis(300), d.downtimeLimit());
        assertEquals(18, d.clearBitmapShift());
        assertEquals(0, d.maxBandwidth());
        assertTrue(d.autoConverge());
    }

    @Test
    void parametersAreChecked() {
        MigrationParameters d = MigrationParameters.defaults();
        assertThrows(IllegalArgumentException.class, () -> d.withMaxBandwidth(-1));
        assertThrows(IllegalArgumentException.class, () -> d.withDowntimeLimit(Duration.ZERO));
        assertThrows(IllegalArgumentException.class, () -> d.withDowntimeLimit(Duration.ofSeconds(2001)));
        assertThrows(IllegalArgumentException.class, () -> d.withTimeout(Duration.ofMillis(-1)));
        assertThrows(IllegalArgumentException.class, () -> new MigrationParameters(0, Duration.ofMillis(300),
                Duration.ofMinutes(1), true, 50, 0, 10, 99, 18));
        assertThrows(IllegalArgumentException.class, () -> new MigrationParameters(0, Duration.ofMillis(300),
                Duration.ofMinutes(1), true, 50, 20, 10, 100, 18));
        assertEquals(7, d.withMaxBandwidth(7).maxBandwidth());
    }

    @Test
    void autoConvergeThrottlesAGuestDirtyingFasterThanTheLink() throws Exception {
        // 4 MiB rewritten at 64 MiB/s over an 8 MiB/s link: each pass takes half a second, in
        // which the guest dirties its whole working set again. It cannot converge unthrottled.
        Workload w = TestSupport.workload(Pattern.RANDOM, 64, 31).withWorkingSet(0, 4 * MIB);
        try (TrackedMachine src = TestSupport.guest(16 * MIB, 1, w)) {
            src.machine().ram().host().asSlice(0, 4 * MIB).fill((byte) 1);
            Connection[] pair = Channels.inProcessPair();
            CompletableFuture<Void> dst = destinationThatMayFail(pair[1]);
            Migration mig = new Migration(src, pair[0], TestSupport.params().withMaxBandwidth(8 * MIB)
                    .withTimeout(Duration.ofSeconds(15)));
            AtomicInteger maxThrottle = new AtomicInteger();
            AtomicLong dirtyRate = new AtomicLong();
            MigrationStats stats = mig.run(s -> {
                if (s.status() == MigrationStatus.ACTIVE) {
                    dirtyRate.accumulateAndGet(s.dirtyPagesRate(), Math::max);
                    if (s.throttlePercent() > 0) {
                        maxThrottle.accumulateAndGet(s.throttlePercent(), Math::max);
                        mig.cancel();
                    }
                }
            });
            assertTrue(maxThrottle.get() >= 20, "auto-converge throttled the guest: " + maxThrottle.get() + "%, " + stats);
            assertTrue(dirtyRate.get() > 0, "a dirty rate was measured");
            assertEquals(MigrationStatus.CANCELLED, stats.status(), stats.error());
            assertEquals(0, src.machine().throttle(), "the throttle is lifted when the migration ends");
            assertTrue(stats.throttlePercent() >= maxThrottle.get(),
                    "the final figures report the highest throttle reached: " + stats.throttlePercent());
            assertTrue(stats.dirtySyncCount() >= 3, stats.toString());
            assertTrue(stats.transferred() > 4 * MIB, "more than one pass: " + stats.transferred());
            // The link limit held: at most 8 MiB/s, with a period's slack.
            double seconds = stats.totalTimeMs() / 1000.0;
            assertTrue(stats.transferred() <= 8 * MIB * (seconds + 0.3), stats.transferred() + " bytes in " + seconds + " s");
            dst.get(20, TimeUnit.SECONDS);
        }
    }

    @Test
    void noThrottleWithoutAutoConverge() throws Exception {
        Workload w = TestSupport.workload(Pattern.RANDOM, 64, 32).withWorkingSet(0, 4 * MIB);
        try (TrackedMachine src = TestSupport.guest(16 * MIB, 1, w)) {
            src.machine().ram().host().asSlice(0, 4 * MIB).fill((byte) 1);
            Connection[] pair = Channels.inProcessPair();
            CompletableFuture<Void> dst = destinationThatMayFail(pair[1]);
            AtomicInteger maxThrottle = new AtomicInteger();
            MigrationStats stats = new Migration(src, pair[0], TestSupport.params().withMaxBandwidth(8 * MIB)
                    .withAutoConverge(false).withTimeout(Duration.ofMillis(2600))).run(
                    s -> maxThrottle.accumulateAndGet(s.throttlePercent(), Math::max));
            assertEquals(0, maxThrottle.get());
            assertEquals(MigrationStatus.FAILED, stats.status());
            assertTrue(stats.error().startsWith("timed out"), stats.error());
            dst.get(20, TimeUnit.SECONDS);
        }
    }

    /** A 16 MiB destination on {@code end}; it fails when the source gives up, as it should. */
    private static CompletableFuture<Void> destinationThatMayFail(Connection end) {
        return CompletableFuture.runAsync(() -> {
            try (Connection c = end) {
                TestSupport.incoming(16 * MIB).receive(c).machine().close();
            } catch (Exception expected) {
                // Cancelled, timed out or given up: the destination's stream ends early.
            }
        });
    }
}
