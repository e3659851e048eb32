package dev.ferry.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Instant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

/**
 * {@code ./ferry} (the README's main command) builds when, and only when, a source is newer than
 * the last build: after {@code ./mvnw verify}, whose assembly keeps the launcher's old date, it
 * runs at once instead of rebuilding. Runs the real script in a tree of stand-ins: a
 * {@code mvnw} that counts builds, a launcher that says it ran.
 */
class LauncherStalenessTest {

    private static final Path SCRIPT = Path.of("..", "ferry").toAbsolutePath().normalize();

    @Test
    void buildsOnlyWhenASourceIsNewerThanTheLastBuild(@TempDir Path root) throws Exception {
        Path ferry = root.resolve("ferry");
        Files.copy(SCRIPT, ferry);
        executable(ferry, "");
        executable(root.resolve("mvnw"), "#!/bin/sh\necho build >> \"$(dirname \"$0\")/builds\"\n");
        Path launcher = root.resolve("distribution/target/ferry-0.1.0-SNAPSHOT/ferry/bin/ferry");
        Files.createDirectories(launcher.getParent());
        executable(launcher, "#!/bin/sh\necho ran \"$@\"\n");
        Path source = root.resolve("machine/src/main/java/A.java");
        Files.createDirectories(source.getParent());
        Files.writeString(source, "class A {}");
        Path jar = root.resolve("machine/target/ferry-machine.jar");
        Files.createDirectories(jar.getParent());
        Files.writeString(jar, "jar");

        // As after ./mvnw verify: the jar is newer than the sources, the launcher older than both.
        Instant now = Instant.now();
        age(launcher, now.minusSeconds(1000));
        age(source, now.minusSeconds(100));
        age(jar, now.minusSeconds(10));
        assertEquals("ran migrate", run(root, ferry));
        assertFalse(Files.exists(root.resolve("builds")), "no rebuild after a build");

        // A source edited since: one build, then none.
        age(source, now.minusSeconds(5));
        assertEquals("ran migrate", run(root, ferry));
        assertEquals(1, Files.readAllLines(root.resolve("builds")).size());
        assertEquals("ran migrate", run(root, ferry));
        assertEquals(1, Files.readAllLines(root.resolve("builds")).size(), "the launcher marks the build");
    }

    private static String run(Path root, Path ferry) throws IOException, InterruptedException {
        Process p = new ProcessBuilder("bash", ferry.toString(), "migrate").directory(root.toFile())
                .redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertEquals(0, p.waitFor(), out);
        // The build announces itself on stderr; what matters is that the launcher ran last.
        return out.lines().reduce((a, b) -> b).orElse("");
    }

    private static void executable(Path file, String text) throws IOException {
        if (!text.isEmpty()) {
            Files.writeString(file, text);
        }
        Files.setPosixFilePermissions(file, PosixFilePermissions.fromString("rwxr-xr-x"));
    }

    private static void age(Path file, Instant when) throws IOException {
        Files.setLastModifiedTime(file, FileTime.from(when));
    }
}
