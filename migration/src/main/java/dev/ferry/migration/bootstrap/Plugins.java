package dev.ferry.migration.bootstrap;

import dev.ferry.api.DeviceProvider;
import dev.ferry.api.DirtyTrackerProvider;
import dev.ferry.machine.AcceleratorProvider;

import java.io.IOException;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.ServiceConfigurationError;
import java.util.ServiceLoader;
import java.util.stream.Stream;

/**
 * The providers on the class path, found with {@link ServiceLoader}. A plugin jar that fails to
 * load is reported, not fatal: the rest of Ferry keeps working.
 *
 * @param trackers     dirty tracker providers
 * @param accelerators accelerator providers
 * @param devices      device providers
 * @param problems     one per plugin or provider that could not be loaded
 */
public record Plugins(List<DirtyTrackerProvider> trackers, List<AcceleratorProvider> accelerators,
                      List<DeviceProvider> devices, List<Problem> problems) {

    public Plugins {
        trackers = List.copyOf(trackers);
        accelerators = List.copyOf(accelerators);
        devices = List.copyOf(devices);
        problems = List.copyOf(problems);
    }

    /** Providers without devices. */
    public Plugins(List<DirtyTrackerProvider> trackers, List<AcceleratorProvider> accelerators, List<Problem> problems) {
        this(trackers, accelerators, List.of(), problems);
    }

    /** @return the providers visible to {@code loader} */
    public static Plugins discover(ClassLoader loader) {
        List<Problem> problems = new ArrayList<>();
        return new Plugins(load(DirtyTrackerProvider.class, loader, null, problems),
                load(AcceleratorProvider.class, loader, null, problems),
                load(DeviceProvider.class, loader, null, problems), problems);
    }

    /** @return the providers on Ferry's own class path */
    public static Plugins discover() {
        return discover(Plugins.class.getClassLoader());
    }

    /**
     * The providers on Ferry's class path and those of the plugins in {@code pluginDirs}. In a
     * plugin directory, each {@code .jar} file is a plugin, and each subdirectory is a plugin
     * whose jars (the plugin and its own dependencies) share a class loader. Every plugin gets a
     * class loader of its own whose parent is Ferry's, so it sees {@code ferry-api} and its own
     * classes, and a plugin that fails is reported with its jar and the reason, not fatal.
     *
     * @param pluginDirs directories to look in; one that does not exist is a problem, not an error
     */
    public static Plugins discover(List<Path> pluginDirs) {
        Plugins own = discover();
        List<DirtyTrackerProvider> trackers = new ArrayList<>(own.trackers);
        List<AcceleratorProvider> accelerators = new ArrayList<>(own.accelerators);
        List<DeviceProvider> devices = new ArrayList<>(own.devices);
        List<Problem> problems = new ArrayList<>(own.problems);
        for (Path dir : pluginDirs) {
            if (!Files.isDirectory(dir)) {
                problems.add(new Problem(dir.toString(), "not a directory; --plugin-path names a directory of plugin jars"));
                continue;
            }
            List<Path> plugins;
            try (Stream<Path> entries = Files.list(dir)) {
                plugins = entries.filter(p -> Files.isDirectory(p) || p.toString().endsWith(".jar")).sorted().toList();
            } catch (IOException e) {
                problems.add(new Problem(dir.toString(), "cannot list it: " + e.getMessage()));
                continue;
            }
            for (Path plugin : plugins) {
                String source = dir.relativize(plugin).toString();
                URL[] jars;
                try {
                    jars = jarsOf(plugin);
                } catch (IOException e) {
                    problems.add(new Problem(source, "cannot read it: " + e.getMessage()));
                    continue;
                }
                if (jars.length == 0) {
                    problems.add(new Problem(source, "no jar in it"));
                    continue;
                }
                // Never closed: the providers' classes live as long as Ferry does.
                URLClassLoader loader = new URLClassLoader("plugin " + source, jars, Plugins.class.getClassLoader());
                int before = problems.size();
                int found = trackers.size() + accelerators.size() + devices.size();
                trackers.addAll(load(DirtyTrackerProvider.class, loader, source, problems));
                accelerators.addAll(load(AcceleratorProvider.class, loader, source, problems));
                devices.addAll(load(DeviceProvider.class, loader, source, problems));
                if (problems.size() == before && trackers.size() + accelerators.size() + devices.size() == found) {
                    problems.add(new Problem(source, "no Ferry provider in it (a plugin lists its provider in "
                            + "META-INF/services/" + DirtyTrackerProvider.class.getName() + ")"));
                }
            }
        }
        return new Plugins(trackers, accelerators, devices, problems);
    }

    private static URL[] jarsOf(Path plugin) throws IOException {
        if (!Files.isDirectory(plugin)) {
            return new URL[]{plugin.toUri().toURL()};
        }
        List<URL> urls = new ArrayList<>();
        try (Stream<Path> entries = Files.list(plugin)) {
            for (Path p : entries.filter(p -> p.toString().endsWith(".jar")).sorted().toList()) {
                urls.add(p.toUri().toURL());
            }
        }
        return urls.toArray(URL[]::new);
    }

    /**
     * Loads the providers of {@code type} that {@code loader} sees; with a {@code source}, only
     * those whose class that loader defined (its parent's are Ferry's own, found already).
     */
    private static <T> List<T> load(Class<T> type, ClassLoader loader, String source, List<Problem> problems) {
        List<T> found = new ArrayList<>();
        // The iterator, not stream(): after a broken entry it goes on to the next one.
        var it = ServiceLoader.load(type, loader).iterator();
        while (true) {
            try {
                if (!it.hasNext()) {
                    break;
                }
                T p = it.next();
                if (source == null || p.getClass().getClassLoader() == loader) {
                    found.add(p);
                }
            } catch (ServiceConfigurationError | LinkageError e) {
                // LinkageError: a plugin built against another ferry-api, or missing a dependency.
                problems.add(new Problem(source == null ? "class path" : source,
                        "a " + type.getSimpleName() + " could not be loaded: " + message(e)));
            }
        }
        return found;
    }

    /**
     * A plugin, or a provider, that could not be loaded.
     *
     * @param source the plugin's jar or directory, relative to its plugin directory, or
     *               {@code class path} for Ferry's own
     * @param reason what went wrong, in one line
     */
    public record Problem(String source, String reason) {
        @Override
        public String toString() {
            return source + ": " + reason;
        }
    }

    private static String message(Throwable e) {
        String m = e.getMessage();
        Throwable cause = e.getCause();
        if (cause != null && cause != e) {
            m = m + ": " + cause;
        }
        return m;
    }
}
