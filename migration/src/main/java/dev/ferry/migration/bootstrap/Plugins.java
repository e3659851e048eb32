package dev.ferry.migration.bootstrap;

import dev.ferry.api.DeviceProvider;
import dev.ferry.api.DirtyTrackerProvider;
import dev.ferry.machine.AcceleratorProvider;

import java.util.ArrayList;
import java.util.List;
import java.util.ServiceConfigurationError;
import java.util.ServiceLoader;

/**
 * The providers on the class path, found with {@link ServiceLoader}. A plugin jar that fails to
 * load is reported, not fatal: the rest of Ferry keeps working.
 *
 * @param trackers     dirty tracker providers
 * @param accelerators accelerator providers
 * @param devices      device providers
 * @param problems     one line per provider that could not be loaded
 */
public record Plugins(List<DirtyTrackerProvider> trackers, List<AcceleratorProvider> accelerators,
                      List<DeviceProvider> devices, List<String> problems) {

    public Plugins {
        trackers = List.copyOf(trackers);
        accelerators = List.copyOf(accelerators);
        devices = List.copyOf(devices);
        problems = List.copyOf(problems);
    }

    /** Providers without devices. */
    public Plugins(List<DirtyTrackerProvider> trackers, List<AcceleratorProvider> accelerators, List<String> problems) {
        this(trackers, accelerators, List.of(), problems);
    }

    /** @return the providers visible to {@code loader} */
    public static Plugins discover(ClassLoader loader) {
        List<String> problems = new ArrayList<>();
        return new Plugins(load(DirtyTrackerProvider.class, loader, problems),
                load(AcceleratorProvider.class, loader, problems), load(DeviceProvider.class, loader, problems),
                problems);
    }

    /** @return the providers on Ferry's own class path */
    public static Plugins discover() {
        return discover(Plugins.class.getClassLoader());
    }

    private static <T> List<T> load(Class<T> type, ClassLoader loader, List<String> problems) {
        List<T> found = new ArrayList<>();
        var it = ServiceLoader.load(type, loader).iterator();
        while (true) {
            try {
                if (!it.hasNext()) {
                    break;
                }
                found.add(it.next());
            } catch (ServiceConfigurationError e) {
                problems.add("a " + type.getSimpleName() + " could not be loaded: " + e.getMessage());
            }
        }
        return found;
    }
}
