package dev.ferry.migration.bootstrap;

import com.google.inject.AbstractModule;
import com.google.inject.Provider;
import com.google.inject.Provides;
import com.google.inject.Singleton;
import dev.ferry.migration.Incoming;
import dev.ferry.migration.MigrationParameters;

import java.util.List;

/**
 * Binds the parts of one migration from the user's {@link MigrationSettings}: the plan
 * (accelerator and trackers), the devices, the parameters, the destination side and the target.
 * With {@link FerryModule}'s plugin maps, Guice assembles the {@link Orchestrator} from them; a
 * user's own combination or a test overrides a binding ({@code Modules.override}) to swap a
 * part: another target, a destination that loads device state per device, different
 * parameters.
 */
public final class MigrationModule extends AbstractModule {

    private final MigrationSettings settings;

    public MigrationModule(MigrationSettings settings) {
        this.settings = settings;
    }

    @Override
    protected void configure() {
        bind(MigrationSettings.class).toInstance(settings);
        bind(MigrationParameters.class).toInstance(settings.parameters());
        bind(Incoming.DeviceLoad.class).toInstance(settings.deviceLoad());
    }

    @Provides
    @Singleton
    Plan plan(Bootstrap bootstrap, MigrationSettings s) {
        return bootstrap.plan(s.accelerator(), s.trackers(), s.trackerOptions());
    }

    @Provides
    @Singleton
    List<DeviceRequest> devices(Bootstrap bootstrap, MigrationSettings s) {
        return bootstrap.devices(s.devices());
    }

    /** The destination side, for a destination in this process: a new one per migration. */
    @Provides
    Incoming incoming(Bootstrap bootstrap, MigrationSettings s, Incoming.DeviceLoad deviceLoad) {
        return bootstrap.incoming(s.destinationMaxRam(), s.destinationPreallocate(), deviceLoad);
    }

    @Provides
    @Singleton
    MigrationTarget target(MigrationSettings s, Provider<Incoming> incoming) {
        return s.target().map(MigrationTarget::at)
                .orElseGet(() -> MigrationTarget.inProcess(incoming::get, s.machine().ramSize()));
    }
}
