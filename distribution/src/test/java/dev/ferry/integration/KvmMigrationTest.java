package dev.ferry.integration;

import dev.ferry.kvm.KvmTestSupport;
import dev.ferry.machine.Guests;
import dev.ferry.machine.Machine;
import dev.ferry.machine.MachineConfig;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.SequentialImage;
import dev.ferry.machine.workload.Workload;
import dev.ferry.migration.Incoming;
import dev.ferry.migration.LoopbackMigration;
import dev.ferry.migration.MigrationParameters;
import dev.ferry.migration.MigrationStats;
import dev.ferry.migration.MigrationStatus;
import dev.ferry.migration.bootstrap.Bootstrap;
import dev.ferry.migration.bootstrap.TrackedMachine;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.time.Duration;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Continuity on real KVM: a sequential guest running in KVM, dirtying its RAM while each KVM
 * tracker follows it, is migrated over loopback TCP to a KVM destination, and its own counters
 * carry on there from exactly where the source stopped. Needs /dev/kvm: skipped elsewhere with
 * the probe's reason, failed instead with {@code FERRY_REQUIRE_KVM=1}.
 */
@Tag(KvmTestSupport.TAG)
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class KvmMigrationTest {

    private static final long RAM = 64L << 20;
    private static final int VCPUS = 2;
    private static Bootstrap bootstrap;

    @BeforeAll
    static void needKvm() {
        KvmTestSupport.assumeKvm();
        bootstrap = Bootstrap.create();
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"kvm-dirtylog", "kvm-dirtyring"})
    void theGuestCarriesOnAtTheDestination(String tracker) throws Exception {
        // Paced, so that it converges at the default bandwidth and still dirties pages while
        // it is sent: 50 MiB/s over 62 MiB of working set.
        Workload w = new Workload(Pattern.SEQUENTIAL, 0, 0, 50, Workload.PAGE_SIZE, 0.1, 0.9, 1);
        MigrationParameters params = MigrationParameters.defaults().withTimeout(Duration.ofSeconds(60));
        try (TrackedMachine source = bootstrap.build(bootstrap.plan("kvm", tracker, Map.of()),
                MachineConfig.of(RAM, VCPUS, w).withPreallocate(false))) {
            Machine src = source.machine();
            src.start();
            Guests.awaitWrites(src, 2000);
            LoopbackMigration.Outcome o = LoopbackMigration.run(source, params,
                    bootstrap.incoming(RAM, false, Incoming.DeviceLoad.BATCHED), s -> { });
            MigrationStats s = o.stats();
            assertEquals(MigrationStatus.COMPLETED, s.status(), s.error());
            assertTrue(o.destination().isPresent(), () -> o.destinationError().orElse("no destination"));
            try (Machine dst = o.destination().get().machine()) {
                assertEquals("kvm", dst.accelerator().name());
                checkContinuity(src, dst);
            }
        }
    }

    /** As the soft accelerator's continuity test: the destination starts where the source stopped. */
    private static void checkContinuity(Machine src, Machine dst) {
        Workload w = src.config().workload();
        assertEquals(w, dst.config().workload());
        assertEquals(Optional.empty(), SequentialImage.check(src.ram().host(), w, VCPUS));
        long[] stopped = SequentialImage.steps(src.ram().host(), w, VCPUS);

        dst.pause();
        assertEquals(Optional.empty(), SequentialImage.check(dst.ram().host(), w, VCPUS), "no page was lost");
        long[] arrived = SequentialImage.steps(dst.ram().host(), w, VCPUS);
        assertEquals(dst.pagesWritten(), SequentialImage.advance(stopped, arrived, w, RAM),
                "the destination starts where the source stopped");

        dst.resume();
        Guests.awaitWrites(dst, 1000);
        dst.pause();
        assertEquals(Optional.empty(), SequentialImage.check(dst.ram().host(), w, VCPUS));
        long advanced = SequentialImage.advance(stopped, SequentialImage.steps(dst.ram().host(), w, VCPUS), w, RAM);
        assertTrue(advanced >= 1000, "the guest moved on: " + advanced);
        assertEquals(dst.pagesWritten(), advanced);
        assertTrue(dst.vcpuFailure().isEmpty());
    }
}
