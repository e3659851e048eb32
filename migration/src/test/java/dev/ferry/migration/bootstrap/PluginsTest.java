package dev.ferry.migration.bootstrap;

import dev.ferry.api.DirtyTrackerProvider;
import dev.ferry.machine.AcceleratorProvider;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** ServiceLoader discovery: what is found, and a broken plugin jar reported rather than fatal. */
class PluginsTest {

    @Test
    void findsTheSoftProviders() {
        Plugins p = Plugins.discover();
        assertEquals(List.of("soft"), p.trackers().stream().map(DirtyTrackerProvider::name).filter("soft"::equals).toList());
        assertEquals(List.of("soft"), p.accelerators().stream().map(AcceleratorProvider::name).filter("soft"::equals).toList());
        assertTrue(p.problems().isEmpty(), p.problems().toString());
    }

    @Test
    void aBrokenPluginIsReportedAndTheRestStillLoads(@TempDir Path dir) throws IOException {
        Path services = Files.createDirectories(dir.resolve("META-INF/services"));
        Files.writeString(services.resolve(DirtyTrackerProvider.class.getName()), "com.example.NoSuchTracker\n");
        Files.writeString(services.resolve(AcceleratorProvider.class.getName()),
                PluginsTest.class.getName() + "\n" + Exploding.class.getName() + "\n");
        try (URLClassLoader loader = new URLClassLoader(new URL[]{dir.toUri().toURL()}, getClass().getClassLoader())) {
            Plugins p = Plugins.discover(loader);
            assertTrue(p.trackers().stream().anyMatch(t -> t.name().equals("soft")), "the good plugins still load");
            assertTrue(p.accelerators().stream().anyMatch(a -> a.name().equals("soft")));
            assertEquals(3, p.problems().size(), p.problems().toString());
            assertTrue(p.problems().get(0).toString().contains("DirtyTrackerProvider could not be loaded"), p.problems().get(0).toString());
            assertTrue(p.problems().get(0).toString().contains("com.example.NoSuchTracker"), p.problems().get(0).toString());
            assertTrue(p.problems().get(1).toString().contains("AcceleratorProvider could not be loaded"), p.problems().get(1).toString());
            assertTrue(p.problems().get(1).toString().contains("not a subtype"), p.problems().get(1).toString());
            assertTrue(p.problems().get(2).toString().contains("Exploding"), p.problems().get(2).toString());
        }
    }

    /** A plugin whose constructor fails. */
    public static final class Exploding implements AcceleratorProvider {
        public Exploding() {
            throw new IllegalStateException("cannot start");
        }

        @Override
        public String name() {
            return "exploding";
        }

        @Override
        public String description() {
            return "never constructed";
        }

        @Override
        public dev.ferry.api.Availability probe() {
            return dev.ferry.api.Availability.yes();
        }

        @Override
        public int autoPriority() {
            return 0;
        }

        @Override
        public dev.ferry.machine.Accelerator create(java.util.Map<String, String> properties) {
            throw new AssertionError();
        }
    }

    @Test
    void listsAreCopies() {
        Plugins p = new Plugins(new java.util.ArrayList<>(), List.of(), List.of());
        assertThrows(UnsupportedOperationException.class, () -> p.trackers().add(null));
    }
}
