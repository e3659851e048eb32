package dev.ferry.migration.bootstrap;

import com.google.inject.Inject;
import com.google.inject.Module;
import com.google.inject.ProvisionException;
import com.google.inject.util.Modules;
import dev.ferry.migration.LoopbackMigration;
import dev.ferry.migration.MigrationParameters;
import dev.ferry.migration.MigrationStats;

import java.io.IOException;
import java.util.List;
import java.util.function.Consumer;

/**
 * Runs a migration from parts Guice assembled ({@link FerryModule}'s plugins,
 * {@link MigrationModule}'s settings): reach the target, build the source guest with its
 * trackers and devices, migrate. The command line and the benchmarks drive it in those steps,
 * so they can watch the guest in between.
 */
public final class Orchestrator {

    private final Bootstrap bootstrap;
    private final MigrationSettings settings;
    private final Plan plan;
    private final List<DeviceRequest> devices;
    private final MigrationParameters params;
    private final MigrationTarget target;

    @Inject
    Orchestrator(Bootstrap bootstrap, MigrationSettings settings, Plan plan, List<DeviceRequest> devices,
                 MigrationParameters params, MigrationTarget target) {
        this.bootstrap = bootstrap;
        this.settings = settings;
        this.plan = plan;
        this.devices = devices;
        this.params = params;
        this.target = target;
    }

    /**
     * Assembles an orchestrator.
     *
     * @param overrides modules whose bindings replace the defaults (a part swapped)
     * @throws UsageException       for settings that name an unknown or unavailable plugin, or a bad option
     * @throws IllegalStateException for a plugin configuration error (two plugins with one name)
     */
    public static Orchestrator create(Plugins plugins, MigrationSettings settings, Module... overrides) {
        try {
            return Bootstrap.injector(plugins, Modules.override(new FerryModule(plugins), new MigrationModule(settings))
                    .with(overrides)).getInstance(Orchestrator.class);
        } catch (ProvisionException e) {
            // A provider's own error (an unknown tracker, a bad device option) is the user's to see.
            for (Throwable c = e.getCause(); c != null; c = c.getCause()) {
                if (c instanceof UsageException u) {
                    throw u;
                }
            }
            throw e;
        }
    }

    /** @return the resolved accelerator and trackers */
    public Plan plan() {
        return plan;
    }

    /** @return the migration's parameters */
    public MigrationParameters parameters() {
        return params;
    }

    /**
     * Reaches the target (before the guest exists).
     *
     * @throws IOException if it cannot be reached
     */
    public MigrationTarget.Session connect() throws IOException {
        return target.open();
    }

    /**
     * Builds the source guest with its trackers and devices; its vCPUs do not run yet.
     *
     * @throws UsageException for a configuration the accelerator, a tracker or a device refuses
     */
    public TrackedMachine buildSource() {
        return bootstrap.build(plan, settings.machine(), devices);
    }

    /** Migrates the running {@code source} over {@code session}. */
    public LoopbackMigration.Outcome migrate(MigrationTarget.Session session, TrackedMachine source,
                                             Consumer<MigrationStats> progress) throws IOException {
        return session.migrate(source, params, progress);
    }
}
