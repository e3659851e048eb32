package dev.ferry.migration.dirtyrate;

import dev.ferry.machine.MachineConfig;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import dev.ferry.migration.bootstrap.Bootstrap;
import dev.ferry.migration.bootstrap.TrackedMachine;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Dirty-rate measurement on the soft accelerator: behaviour with loose bounds, not a benchmark. */
class DirtyRateMeasurementTest {

    private static Bootstrap bootstrap;

    @BeforeAll
    static void discover() {
        bootstrap = Bootstrap.create();
    }

    private static TrackedMachine guest(long mib, int vcpus, Workload w) {
        return bootstrap.build(bootstrap.plan("soft", "soft", Map.of()),
                MachineConfig.of(mib << 20, vcpus, w).withPreallocate(false));
    }

    @Test
    void sequentialGuestAt50MiBpsMeasuresAbout50() {
        try (TrackedMachine tm = guest(64, 1, Workload.of(Pattern.SEQUENTIAL, 50))) {
            List<double[]> progress = new ArrayList<>();
            DirtyRateResult r = new DirtyRateMeasurement(tm, Duration.ofMillis(1500), DirtyRateMeasurement.DEFAULT_SYNC_INTERVAL)
                    .run(progress::add);
            assertTrue(r.dirtyRateMiBps() > 37.5 && r.dirtyRateMiBps() < 62.5, "dirty rate " + r.dirtyRateMiBps());
            assertTrue(r.guestWriteRateMiBps() > 37.5 && r.guestWriteRateMiBps() < 62.5, "write rate " + r.guestWriteRateMiBps());
            assertEquals("soft", r.accelerator());
            assertEquals(List.of("soft"), r.trackers());
            assertTrue(r.seconds() >= 1.4 && r.seconds() < 3, "measured " + r.seconds() + " s");
            assertTrue(r.syncs() >= 10 && r.syncs() <= 20, r.syncs() + " syncs of 100 ms in 1.5 s");
            assertTrue(r.pagesReported() > 0);
            assertEquals((double) r.pagesReported() / r.syncs(), r.pagesPerSync(), 1e-9);
            assertTrue(r.syncMeanMicros() > 0 && r.syncMaxMicros() >= r.syncMeanMicros());
            assertEquals(r.syncs(), progress.size(), "progress after every sync");
            double last = -1;
            for (double[] p : progress) {
                assertTrue(p[0] >= last && p[0] <= 1, "progress goes forward: " + p[0]);
                last = p[0];
            }
            assertEquals(1.0, last, 0.05);
            // The measurement leaves the machine paused, dirty logging off.
            assertFalse(tm.machine().memory().globalDirtyLog());
            long written = tm.machine().pagesWritten();
            sleep(100);
            assertEquals(written, tm.machine().pagesWritten(), "paused");
        }
    }

    @Test
    void aRandomGuestRewritingPagesBetweenSyncsReportsFewerPagesThanItWrites() {
        // 8 MiB written at 400 MiB/s: each page is rewritten many times per sync interval.
        try (TrackedMachine tm = guest(8, 2, Workload.of(Pattern.RANDOM, 400))) {
            DirtyRateResult r = new DirtyRateMeasurement(tm, Duration.ofMillis(400), Duration.ofMillis(100)).run(p -> {
            });
            assertTrue(r.dirtyRateMiBps() <= 8 / 0.1 * 1.3, "at most all of RAM per sync: " + r.dirtyRateMiBps());
            assertTrue(r.guestWriteRateMiBps() > r.dirtyRateMiBps(), r.toString());
        }
    }

    @Test
    void refusesBadTimes() {
        try (TrackedMachine tm = guest(2, 1, Workload.of(Pattern.RANDOM, 1))) {
            assertThrows(IllegalArgumentException.class, () -> new DirtyRateMeasurement(tm, Duration.ZERO, Duration.ofMillis(1)));
            assertThrows(IllegalArgumentException.class, () -> new DirtyRateMeasurement(tm, Duration.ofMillis(-1), Duration.ofMillis(1)));
            assertThrows(IllegalArgumentException.class,
                    () -> new DirtyRateMeasurement(tm, Duration.ofMillis(100), Duration.ofMillis(200)));
            assertThrows(IllegalArgumentException.class,
                    () -> new DirtyRateMeasurement(tm, Duration.ofMillis(100), Duration.ofNanos(500_000)));
        }
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
