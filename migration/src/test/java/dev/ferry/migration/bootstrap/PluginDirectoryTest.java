package dev.ferry.migration.bootstrap;

import dev.ferry.api.DirtyTrackerProvider;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import javax.tools.ToolProvider;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.jar.JarEntry;
import java.util.jar.JarOutputStream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Plugins from a plugin directory, as an outside author ships them: jars compiled here against
 * ferry-api alone, each loaded by a class loader of its own; what fails is named with its jar.
 */
class PluginDirectoryTest {

    private static final String GOOD = """
            package ext;
            public final class GoodTracker implements dev.ferry.api.DirtyTrackerProvider {
                public String name() { return "ext-good"; }
                public String description() { return "a tracker from a plugin jar"; }
                public dev.ferry.api.Availability probe() { return dev.ferry.api.Availability.yes(); }
                public dev.ferry.api.DirtyTracker create(dev.ferry.api.MachineContext m) {
                    return new dev.ferry.api.DirtyTracker() { };
                }
            }
            """;
    private static final String FAILING_PROBE = """
            package ext;
            public final class FailingProbe implements dev.ferry.api.DirtyTrackerProvider {
                public String name() { return "ext-failing"; }
                public String description() { return "its probe throws"; }
                public dev.ferry.api.Availability probe() { throw new IllegalStateException("no such device"); }
                public dev.ferry.api.DirtyTracker create(dev.ferry.api.MachineContext m) { throw new AssertionError(); }
            }
            """;

    /** Compiles {@code source} (one public class of package ext) against ferry-api into a plugin jar. */
    private static Path pluginJar(Path dir, String jarName, String className, String source, String services)
            throws IOException {
        Path src = Files.createDirectories(dir.resolve("src-" + jarName + "/ext"));
        Path classes = Files.createDirectories(dir.resolve("classes-" + jarName));
        Files.writeString(src.resolve(className + ".java"), source);
        String api = Path.of(DirtyTrackerProvider.class.getProtectionDomain().getCodeSource().getLocation().getPath())
                .toString();
        int rc = ToolProvider.getSystemJavaCompiler().run(null, null, null, "-d", classes.toString(),
                "-cp", api, src.resolve(className + ".java").toString());
        assertEquals(0, rc, "the plugin compiles against ferry-api alone");
        Path jar = Files.createDirectories(dir.resolve("plugins")).resolve(jarName);
        try (JarOutputStream out = new JarOutputStream(Files.newOutputStream(jar))) {
            out.putNextEntry(new JarEntry("ext/" + className + ".class"));
            out.write(Files.readAllBytes(classes.resolve("ext/" + className + ".class")));
            if (services != null) {
                out.putNextEntry(new JarEntry("META-INF/services/" + DirtyTrackerProvider.class.getName()));
                out.write(services.getBytes());
            }
        }
        return jar;
    }

    @Test
    void aPluginJarIsFoundAndWhatFailsIsNamedWithItsJar(@TempDir Path dir) throws IOException {
        pluginJar(dir, "good.jar", "GoodTracker", GOOD, "ext.GoodTracker\n");
        pluginJar(dir, "failing-probe.jar", "FailingProbe", FAILING_PROBE, "ext.FailingProbe\n");
        pluginJar(dir, "broken.jar", "GoodTracker", GOOD.replace("ext-good", "ext-broken"), "ext.NoSuchClass\n");
        pluginJar(dir, "no-services.jar", "GoodTracker", GOOD, null);
        Path plugins = dir.resolve("plugins");

        Plugins found = Plugins.discover(List.of(plugins, dir.resolve("missing")));
        List<String> names = found.trackers().stream().map(DirtyTrackerProvider::name).toList();
        assertTrue(names.contains("ext-good") && names.contains("soft"), names.toString());
        assertEquals(1, names.stream().filter("soft"::equals).count(), "Ferry's own providers are found once: " + names);
        Map<String, String> problems = new java.util.TreeMap<>();
        found.problems().forEach(p -> problems.put(p.source(), p.reason()));
        assertTrue(problems.get("broken.jar").contains("ext.NoSuchClass"), problems.toString());
        assertTrue(problems.get("no-services.jar").contains("no Ferry provider"), problems.toString());
        assertTrue(problems.get(dir.resolve("missing").toString()).contains("not a directory"), problems.toString());
        assertEquals(3, problems.size(), problems.toString());

        List<PluginInfo> listed = Bootstrap.create(found).trackers();
        PluginInfo good = listed.stream().filter(t -> t.name().equals("ext-good")).findFirst().orElseThrow();
        assertTrue(good.available(), good.toString());
        assertTrue(good.description().endsWith("[plugin good.jar]"), good.description());
        PluginInfo failing = listed.stream().filter(t -> t.name().equals("ext-failing")).findFirst().orElseThrow();
        assertFalse(failing.available());
        assertTrue(failing.reason().startsWith("probe failed in plugin failing-probe.jar"), failing.reason());
        assertTrue(failing.reason().contains("no such device"), failing.reason());
    }

    @Test
    void aDirectoryIsOnePluginWithItsOwnDependencies(@TempDir Path dir) throws IOException {
        Path jar = pluginJar(dir, "good.jar", "GoodTracker", GOOD, "ext.GoodTracker\n");
        Path pluginDir = Files.createDirectories(dir.resolve("path/good-plugin"));
        Files.move(jar, pluginDir.resolve("good.jar"));
        Files.writeString(pluginDir.resolve("README"), "not a jar: ignored");
        Plugins found = Plugins.discover(List.of(dir.resolve("path")));
        assertTrue(found.problems().isEmpty(), found.problems().toString());
        assertTrue(found.trackers().stream().anyMatch(t -> t.name().equals("ext-good")));
    }
}
