package dev.ferry.migration.bootstrap;

import com.google.inject.AbstractModule;
import com.google.inject.multibindings.MapBinder;
import dev.ferry.api.DeviceProvider;
import dev.ferry.api.DirtyTrackerProvider;
import dev.ferry.machine.AcceleratorProvider;

/**
 * The Guice composition root: binds every discovered tracker, accelerator and device provider by name,
 * so the engine asks for {@code Map<String, DirtyTrackerProvider>} and never for a class. Two
 * plugins claiming one name is a configuration error Guice reports at injector creation.
 */
public final class FerryModule extends AbstractModule {

    private final Plugins plugins;

    public FerryModule(Plugins plugins) {
        this.plugins = plugins;
    }

    @Override
    protected void configure() {
        MapBinder<String, DirtyTrackerProvider> trackers =
                MapBinder.newMapBinder(binder(), String.class, DirtyTrackerProvider.class);
        for (DirtyTrackerProvider p : plugins.trackers()) {
            trackers.addBinding(p.name()).toInstance(p);
        }
        MapBinder<String, AcceleratorProvider> accelerators =
                MapBinder.newMapBinder(binder(), String.class, AcceleratorProvider.class);
        for (AcceleratorProvider p : plugins.accelerators()) {
            accelerators.addBinding(p.name()).toInstance(p);
        }
        MapBinder<String, DeviceProvider> devices =
                MapBinder.newMapBinder(binder(), String.class, DeviceProvider.class);
        for (DeviceProvider p : plugins.devices()) {
            devices.addBinding(p.name()).toInstance(p);
        }
        bind(Plugins.class).toInstance(plugins);
    }
}
