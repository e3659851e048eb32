package dev.ferry.integration;

import dev.ferry.api.Device;
import dev.ferry.machine.Guests;
import dev.ferry.machine.Machine;
import dev.ferry.machine.MachineConfig;
import dev.ferry.machine.ivshmem.IvshmemDevice;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import dev.ferry.migration.Incoming;
import dev.ferry.migration.LoopbackMigration;
import dev.ferry.migration.MigrationParameters;
import dev.ferry.migration.MigrationStatus;
import dev.ferry.migration.bootstrap.Bootstrap;
import dev.ferry.migration.bootstrap.TrackedMachine;
import dev.ferry.vhost.VhostDevice;
import dev.ferry.kvm.KvmTestSupport;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Nested;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Seed 003 end to end: a guest with devices whose state load maps BARs migrates, and the
 * destination applies all device state in one memory transaction (one commit, one render) while
 * every post-load reads guest memory through the address space (the vhost devices check their
 * used rings, ivshmem its shared memory's header) and finds the topology loaded so far; per
 * device, the same migration commits once per device that changes the topology.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class DeviceStateMigrationTest {

    private static final long RAM = 64L << 20;
    private static final List<String> DEVICES = List.of("ivshmem:size=64", "vhost-net:queues=4,rate=10",
            "vhost-blk:queues=2,count=2,rate=5");
    private static Bootstrap bootstrap;

    @BeforeAll
    static void bootstrap() {
        bootstrap = Bootstrap.create();
    }

    private record Result(Incoming.DeviceLoadStats load, List<Long> sourceBars, List<Long> destinationBars) {
    }

    private static Result migrate(Incoming.DeviceLoad mode) throws Exception {
        return migrate("soft", "soft", mode);
    }

    private static Result migrate(String accel, String tracker, Incoming.DeviceLoad mode) throws Exception {
        Workload w = new Workload(Pattern.SEQUENTIAL, 0, 0, 8, Workload.PAGE_SIZE, 0.1, 0.9, 1);
        MigrationParameters params = MigrationParameters.defaults().withTimeout(Duration.ofSeconds(60));
        try (TrackedMachine source = bootstrap.build(bootstrap.plan(accel, tracker, Map.of()),
                MachineConfig.of(RAM, accel.equals("kvm") ? 1 : 2, w).withPreallocate(false),
                bootstrap.devices(DEVICES))) {
            Machine src = source.machine();
            src.start();
            Guests.awaitWrites(src, 200);
            LoopbackMigration.Outcome o = LoopbackMigration.run(source, params, bootstrap.incoming(RAM, false, mode),
                    s -> { });
            assertEquals(MigrationStatus.COMPLETED, o.stats().status(), o.stats().error());
            assertTrue(o.destination().isPresent(), () -> o.destinationError().orElse(""));
            try (Machine dst = o.destination().get().machine()) {
                Guests.awaitWrites(dst, 50); // the vCPUs' state came through their post-load
                return new Result(o.destination().get().deviceLoad(), bars(src), bars(dst));
            }
        }
    }

    private static List<Long> bars(Machine m) {
        return m.devices().stream().map(DeviceStateMigrationTest::bar).toList();
    }

    private static long bar(Device d) {
        return switch (d) {
            case IvshmemDevice i -> i.mappedAt();
            case VhostDevice v -> v.mappedAt();
            default -> throw new AssertionError(d);
        };
    }

    @Test
    void allDeviceStateLoadsInOneTransaction() throws Exception {
        Result r = migrate(Incoming.DeviceLoad.BATCHED);
        assertEquals(r.sourceBars(), r.destinationBars(), "every BAR is where the source had it");
        assertTrue(r.destinationBars().stream().allMatch(a -> a >= RAM), r.destinationBars().toString());
        assertEquals(2 + 4, r.load().sections(), "two vCPUs and four devices");
        assertEquals(1, r.load().commits(), r.load().summary());
        assertEquals(1, r.load().renders(), "post-load reads walk the region graph: " + r.load().summary());
    }

    @Test
    void perDeviceLoadCommitsOncePerDeviceThatMapsSomething() throws Exception {
        Result batched = migrate(Incoming.DeviceLoad.BATCHED);
        Result perDevice = migrate(Incoming.DeviceLoad.PER_DEVICE);
        assertEquals(perDevice.sourceBars(), perDevice.destinationBars());
        assertEquals(4, perDevice.load().commits(), "the vCPUs change no topology; each device maps its BAR: "
                + perDevice.load().summary());
        assertTrue(perDevice.load().listenerCalls() > 2 * batched.load().listenerCalls(),
                "per device: " + perDevice.load().summary() + "; batched: " + batched.load().summary());
    }

    /**
     * On KVM: the ivshmem BAR becomes a memory slot at the one commit, and the guest, whose
     * registers are set in the vCPU's post-load, runs on at the destination.
     */
    @Tag(KvmTestSupport.TAG)
    @Nested
    class Kvm {

        @BeforeAll
        static void needKvm() {
            KvmTestSupport.assumeKvm();
        }

        @Test
        void allDeviceStateLoadsInOneTransaction() throws Exception {
            Result r = migrate("kvm", "kvm-dirtylog", Incoming.DeviceLoad.BATCHED);
            assertEquals(r.sourceBars(), r.destinationBars());
            assertEquals(1 + 4, r.load().sections(), "one vCPU and four devices");
            assertEquals(1, r.load().commits(), r.load().summary());
        }
    }
}
