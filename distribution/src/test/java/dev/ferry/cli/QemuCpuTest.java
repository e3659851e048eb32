package dev.ferry.cli;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.OptionalDouble;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Where QEMU's migration is in the CPU readings of its two processes, and what it cost. */
class QemuCpuTest {

    private static final long MS = 1_000_000L;

    /**
     * Readings every 10 ms: the destination boots (50 ms of CPU), idles 3 s, migrates for 1 s at
     * one core, then idles; the source burns 0.1 core throughout (its guest) and one more core
     * while migrating.
     */
    private static List<QemuCpu.Sample> qemus(long migrationStartMs, long migrationMs, long endMs) {
        List<QemuCpu.Sample> samples = new ArrayList<>();
        for (long t = 0; t <= endMs; t += 10) {
            long migrated = Math.clamp(t - migrationStartMs, 0, migrationMs);
            long dst = Math.min(t, 50) + migrated;
            long src = t / 10 + migrated;
            samples.add(new QemuCpu.Sample(t * MS, src * MS, dst * MS));
        }
        return samples;
    }

    @Test
    void theMigrationStartsWhereTheDestinationStopsIdlingAndLastsQemusTotalTime() {
        OptionalDouble cpu = QemuCpu.overMigration(qemus(3050, 1000, 5000), 1000);
        assertTrue(cpu.isPresent());
        // Destination 1.0 s, source 1.0 s of migration plus 0.1 s of its guest.
        assertEquals(2.1, cpu.getAsDouble(), 0.02);
    }

    @Test
    void withoutAnIdleStretchOrPastTheReadingsItIsNotKnown() {
        assertTrue(QemuCpu.overMigration(qemus(60, 4000, 5000), 1000).isEmpty(), "no idle stretch");
        assertTrue(QemuCpu.overMigration(qemus(3050, 1000, 3500), 1000).isEmpty(), "readings end mid-migration");
        List<QemuCpu.Sample> noDestination = qemus(3050, 1000, 5000).stream()
                .map(s -> new QemuCpu.Sample(s.nanos(), s.sourceCpu(), -1)).toList();
        assertTrue(QemuCpu.overMigration(noDestination, 1000).isEmpty(), "no destination found");
    }

    @Test
    void anIdleStretchThatEndsWithTheReadingsIsNotTheStart() {
        // The destination idles after a short migration for longer than before it: still the
        // stretch a rise ends is the one that counts.
        OptionalDouble cpu = QemuCpu.overMigration(qemus(1050, 500, 6000), 500);
        assertTrue(cpu.isPresent());
        assertEquals(0.5 + 0.55, cpu.getAsDouble(), 0.02);
    }
}
