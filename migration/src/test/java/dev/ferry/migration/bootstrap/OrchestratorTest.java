package dev.ferry.migration.bootstrap;

import com.google.inject.AbstractModule;
import dev.ferry.machine.MachineConfig;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import dev.ferry.migration.Incoming;
import dev.ferry.migration.LoopbackMigration;
import dev.ferry.migration.MigrationParameters;
import dev.ferry.migration.MigrationStatus;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Guice assembles the whole migration: the plan, the devices, the parameters, the destination
 * and the target come from bindings, and a test swaps one by overriding its binding.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class OrchestratorTest {

    private static final long RAM = 32L << 20;

    private static MigrationSettings settings(List<String> devices, String trackers) {
        Workload w = new Workload(Pattern.SEQUENTIAL, 0, 0, 10, Workload.PAGE_SIZE, 0.1, 0.9, 1);
        return new MigrationSettings("soft", trackers, Map.of(), MachineConfig.of(RAM, 1, w).withPreallocate(false),
                devices, MigrationParameters.defaults().withTimeout(Duration.ofSeconds(30)), Optional.empty(), RAM,
                false, Incoming.DeviceLoad.BATCHED);
    }

    private static LoopbackMigration.Outcome run(Orchestrator o) throws Exception {
        try (MigrationTarget.Session session = o.connect(); TrackedMachine source = o.buildSource()) {
            source.machine().start();
            LoopbackMigration.Outcome outcome = o.migrate(session, source, s -> { });
            assertEquals(MigrationStatus.COMPLETED, outcome.stats().status(), outcome.stats().error());
            outcome.destination().orElseThrow().machine().close();
            return outcome;
        }
    }

    @Test
    void theDefaultAssemblyMigratesVerifiedWithTheDevices() throws Exception {
        Orchestrator o = Orchestrator.create(Plugins.discover(), settings(List.of("ivshmem:size=64,count=2"), "soft"));
        assertEquals("soft", o.plan().trackerNames());
        LoopbackMigration.Outcome outcome = run(o);
        assertTrue(outcome.destination().get().verified());
        Incoming.DeviceLoadStats load = outcome.destination().get().deviceLoad();
        assertEquals(Incoming.DeviceLoad.BATCHED, load.mode());
        assertEquals(1, load.commits(), load.summary());
    }

    @Test
    void aBindingSwapsHowTheDestinationLoadsDeviceState() throws Exception {
        Orchestrator o = Orchestrator.create(Plugins.discover(), settings(List.of("ivshmem:size=64,count=2"), "soft"),
                new AbstractModule() {
                    @Override
                    protected void configure() {
                        bind(Incoming.DeviceLoad.class).toInstance(Incoming.DeviceLoad.PER_DEVICE);
                    }
                });
        Incoming.DeviceLoadStats load = run(o).destination().get().deviceLoad();
        assertEquals(Incoming.DeviceLoad.PER_DEVICE, load.mode());
        assertEquals(2, load.commits(), "one per ivshmem device: " + load.summary());
    }

    @Test
    void aBindingSwapsTheTarget() throws Exception {
        AtomicInteger opened = new AtomicInteger();
        Orchestrator o = Orchestrator.create(Plugins.discover(), settings(List.of(), "soft"), new AbstractModule() {
            @Override
            protected void configure() {
                // Wraps the in-process destination: a user's own transport would go here.
                bind(MigrationTarget.class).toInstance(() -> {
                    opened.incrementAndGet();
                    return MigrationTarget.inProcess(() -> Bootstrap.create().incoming(RAM, false,
                            Incoming.DeviceLoad.BATCHED), RAM).open();
                });
            }
        });
        assertTrue(run(o).destination().isPresent());
        assertEquals(1, opened.get());
    }

    @Test
    void badSettingsAreTheUsersErrorsNotGuices() {
        UsageException tracker = assertThrows(UsageException.class,
                () -> Orchestrator.create(Plugins.discover(), settings(List.of(), "no-such-tracker")));
        assertTrue(tracker.getMessage().contains("no-such-tracker"), tracker.getMessage());
        UsageException device = assertThrows(UsageException.class,
                () -> Orchestrator.create(Plugins.discover(), settings(List.of("ivshmem:size=3"), "soft")));
        assertTrue(device.getMessage().contains("size must be a power of two"), device.getMessage());
    }
}
