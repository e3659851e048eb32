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
import java.util.Optional;
import java.util.ServiceConfigurationError;
import java.util.ServiceLoader;
import java.util.function.Predicate;
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

    /** How a plugin's class loader is named: this, then its jar or directory. */
    private static final String LOADER_PREFIX = "plugin ";

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
        return discover(loader, null);
    }

    /**
     * The providers of every kind that {@code loader} sees; with a {@code source}, only those
     * whose class that loader defined (its parent's are Ferry's own, found already).
     */
    private static Plugins discover(ClassLoader loader, String source) {
        List<Problem> problems = new ArrayList<>();
        return new Plugins(load(DirtyTrackerProvider.class, loader, source, problems),
                load(AcceleratorProvider.class, loader, source, problems),
                load(DeviceProvider.class, loader, source, problems), problems);
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
            try {
                plugins = list(dir, p -> Files.isDirectory(p) || isJar(p));
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
                URLClassLoader loader = new URLClassLoader(LOADER_PREFIX + source, jars, Plugins.class.getClassLoader());
                Plugins found = discover(loader, source);
                trackers.addAll(found.trackers);
                accelerators.addAll(found.accelerators);
                devices.addAll(found.devices);
                problems.addAll(found.problems);
                if (found.problems.isEmpty() && found.trackers.isEmpty() && found.accelerators.isEmpty()
                        && found.devices.isEmpty()) {
                    problems.add(new Problem(source, "no Ferry provider in it (a plugin lists its provider in "
                            + "META-INF/services/" + DirtyTrackerProvider.class.getName() + ")"));
                }
            }
        }
        return new Plugins(trackers, accelerators, devices, problems);
    }

    /**
     * @return {@code "plugin JAR"} for a provider loaded from a plugin directory, naming its jar
     *         or directory; empty for one of Ferry's own
     */
    public static Optional<String> origin(Object provider) {
        ClassLoader loader = provider.getClass().getClassLoader();
        String name = loader == null ? null : loader.getName();
        return name != null && name.startsWith(LOADER_PREFIX) ? Optional.of(name) : Optional.empty();
    }

    private static URL[] jarsOf(Path plugin) throws IOException {
        List<URL> urls = new ArrayList<>();
        for (Path jar : Files.isDirectory(plugin) ? list(plugin, Plugins::isJar) : List.of(plugin)) {
            urls.add(jar.toUri().toURL());
        }
        return urls.toArray(URL[]::new);
    }

    private static boolean isJar(Path p) {
        return p.toString().endsWith(".jar");
    }

    /** @return the entries of {@code dir} that {@code keep} accepts, sorted (plugins load in a stable order) */
    private static List<Path> list(Path dir, Predicate<Path> keep) throws IOException {
        try (Stream<Path> entries = Files.list(dir)) {
            return entries.filter(keep).sorted().toList();
        }
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
