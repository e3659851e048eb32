package dev.ferry.integration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.kvm.KvmTestSupport;
import dev.ferry.machine.MachineConfig;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import dev.ferry.migration.bootstrap.Bootstrap;
import dev.ferry.migration.bootstrap.TrackedMachine;
import dev.ferry.migration.dirtyrate.DirtyRateMeasurement;
import dev.ferry.migration.dirtyrate.DirtyRateResult;

import java.time.Duration;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * On real KVM, the dirty rate each KVM tracker reports is the rate the guest writes, within 10%:
 * no page reported over and over (the first runs of kvm-dirtylog with manual protect reported
 * every page on every sync), none missing. The guest writes sequentially over a working set
 * far larger than what it writes between two syncs, so every write is a new dirty page and the
 * two rates must agree; what KVM adds on its own (page-table pages, see the kvm module's
 * src/test/c/lowpages.c) is a few pages per sync.
 */
@Tag(KvmTestSupport.TAG)
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class KvmDirtyRateTest {

    private static final long RAM = 64L << 20;
    private static Bootstrap bootstrap;

    @BeforeAll
    static void needKvm() {
        KvmTestSupport.assumeKvm();
        bootstrap = Bootstrap.create();
    }

    @ParameterizedTest(name = "{0} {1}")
    @CsvSource({"kvm-dirtylog, manual-protect=on", "kvm-dirtylog, manual-protect=off", "kvm-dirtyring, ''"})
    void reportedRateMatchesWhatTheGuestWrites(String tracker, String option) {
        Map<String, String> options = option.isEmpty() ? Map.of()
                : Map.of(option.substring(0, option.indexOf('=')), option.substring(option.indexOf('=') + 1));
        // 8 MiB/s: 200 pages per 100 ms sync, a lap of the 62 MiB working set every ~8 s.
        Workload w = new Workload(Pattern.SEQUENTIAL, 0, 0, 8, Workload.PAGE_SIZE, 0.1, 0.9, 1);
        try (TrackedMachine m = bootstrap.build(bootstrap.plan("kvm", tracker, options),
                MachineConfig.of(RAM, 1, w).withPreallocate(false))) {
            DirtyRateResult r = new DirtyRateMeasurement(m, Duration.ofSeconds(3), Duration.ofMillis(100))
                    .run(p -> { });
            assertEquals("kvm", r.accelerator());
            assertTrue(r.guestWriteRateMiBps() > 1, () -> "the guest hardly ran: " + r);
            double ratio = r.dirtyRateMiBps() / r.guestWriteRateMiBps();
            assertTrue(ratio > 0.9 && ratio < 1.1, () -> String.format(
                    "%s reports %.2f MiB/s while the guest writes %.2f MiB/s (%.0f pages per sync)", tracker,
                    r.dirtyRateMiBps(), r.guestWriteRateMiBps(), r.pagesPerSync()));
        }
    }
}
