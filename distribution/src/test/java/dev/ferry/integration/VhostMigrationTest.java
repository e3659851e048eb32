package dev.ferry.integration;

import dev.ferry.api.Device;
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
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Migrations of a guest whose vhost devices write its RAM by DMA while it moves: with the vhost
 * log, the destination's RAM matches the source's (the migration's own digest check) and the
 * sequential guest carries on; without it, the digest check catches the pages the accelerator
 * never saw. On the soft accelerator here; on KVM in {@link Kvm}.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class VhostMigrationTest {

    private static final long RAM = 64L << 20;
    private static Bootstrap bootstrap;

    @BeforeAll
    static void bootstrap() {
        bootstrap = Bootstrap.create();
    }

    /** Migrates a sequential guest with the devices over loopback TCP. */
    static LoopbackMigration.Outcome migrate(String accel, String tracker, List<String> devices, double guestRate,
                                             boolean checkGuest) throws Exception {
        Workload w = new Workload(Pattern.SEQUENTIAL, 0, 0, guestRate, Workload.PAGE_SIZE, 0.1, 0.9, 1);
        // At 32 MiB/s the guest's 16 MiB/s of writes take an iteration or two after the first
        // pass, so the backends write long after the device memory (the top of RAM) was first sent.
        MigrationParameters params = MigrationParameters.defaults().withTimeout(Duration.ofSeconds(90))
                .withMaxBandwidth(32L << 20);
        try (TrackedMachine source = bootstrap.build(bootstrap.plan(accel, tracker, Map.of()),
                MachineConfig.of(RAM, 1, w).withPreallocate(false), bootstrap.devices(devices))) {
            Machine src = source.machine();
            src.start();
            Guests.awaitWrites(src, 500);
            LoopbackMigration.Outcome o = LoopbackMigration.run(source, params,
                    bootstrap.incoming(RAM, false, Incoming.DeviceLoad.BATCHED), s -> { });
            long dma = src.devices().stream().mapToLong(d -> d.statistics().get("dma-bytes")).sum();
            assertTrue(dma > 1 << 20, "the vhost backends wrote guest RAM during the migration: " + dma + " bytes");
            if (checkGuest && o.destination().isPresent()) {
                try (Machine dst = o.destination().get().machine()) {
                    dst.pause();
                    Workload ws = src.config().workload();
                    assertEquals(ws, dst.config().workload(), "the destination runs the same working set");
                    assertTrue(ws.workingSetOffset() + ws.workingSetSize(RAM) <= RAM - src.config().deviceMemory(),
                            "the guest's working set leaves the device memory alone");
                    assertEquals(Optional.empty(), SequentialImage.check(dst.ram().host(), ws, 1));
                }
            }
            return o;
        }
    }

    private static void assertVerified(LoopbackMigration.Outcome o) {
        MigrationStats s = o.stats();
        assertEquals(MigrationStatus.COMPLETED, s.status(), s.error());
        assertTrue(o.destination().isPresent(), () -> o.destinationError().orElse("no destination"));
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"elected", "every-dev"})
    void dmaWritesArriveWithTheVhostLog(String scan) throws Exception {
        assertVerified(migrate("soft", "soft", List.of("vhost-net:queues=8,rate=40,log-scan=" + scan,
                "vhost-blk:queues=2,count=2,rate=20,log-scan=" + scan), 16, true));
    }

    /**
     * The lost pages are caught by the devices' post-load, which finds the used rings in guest
     * memory behind their device state, or else by the RAM digests.
     */
    static void assertLostPagesCaught(LoopbackMigration.Outcome o) {
        assertEquals(MigrationStatus.FAILED, o.stats().status());
        String e = o.stats().error();
        assertTrue(e.contains("digest") || e.matches(".*used index \\d+ in guest memory, \\d+ in the device state.*"), e);
        assertTrue(o.destination().isEmpty(), "a destination with lost pages is not started");
    }

    @Test
    void withoutTheVhostLogTheLostPagesAreCaught() throws Exception {
        assertLostPagesCaught(migrate("soft", "soft", List.of("vhost-net:queues=4,rate=40,log=off"), 16, false));
    }

    /** The same on real KVM: DMA is invisible to KVM's dirty log and ring alike. */
    @Tag(KvmTestSupport.TAG)
    @org.junit.jupiter.api.Nested
    class Kvm {

        @BeforeAll
        static void needKvm() {
            KvmTestSupport.assumeKvm();
        }

        @ParameterizedTest(name = "{0} + vhost log")
        @ValueSource(strings = {"kvm-dirtylog", "kvm-dirtyring"})
        void dmaWritesArriveWithTheVhostLog(String tracker) throws Exception {
            assertVerified(migrate("kvm", tracker, List.of("vhost-net:queues=4,rate=10",
                    "vhost-blk:queues=2,rate=5"), 16, true));
        }

        @Test
        void withoutTheVhostLogTheLostPagesAreCaught() throws Exception {
            assertLostPagesCaught(migrate("kvm", "kvm-dirtyring", List.of("vhost-net:queues=2,rate=10,log=off"),
                    16, false));
        }
    }
}
