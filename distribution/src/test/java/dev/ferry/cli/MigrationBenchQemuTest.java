package dev.ferry.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;

import static dev.ferry.cli.FerryCliTest.ferry;
import static dev.ferry.cli.FerryCliTest.usageError;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code bench migration --against-qemu}: how it calls qemu-peer and reads its figures, with a
 * stand-in for the script (the real comparison needs QEMU and minutes; its figures are in the
 * issue notes), and what it says where QEMU or the script is missing.
 */
class MigrationBenchQemuTest {

    @Test
    void eachRunIsFollowedByQemusAndTheMediansAreCompared(@TempDir Path dir) throws Exception {
        Path args = dir.resolve("args");
        Path peer = dir.resolve("qemu-peer.sh");
        Files.writeString(peer, "#!/bin/sh\necho \"$* QEMU=$QEMU\" > " + args + "\necho booting >&2\n"
                + "echo '{\"ok\": true, \"status\": \"completed\", \"total-time\": 100000, \"setup-time\": 2, "
                + "\"downtime\": 250, \"ram\": {\"transferred\": 67108864}}'\n");
        Files.setPosixFilePermissions(peer, PosixFilePermissions.fromString("rwxr-xr-x"));
        FerryCliTest.Run r = ferry("bench", "migration", "--mem", "64M", "--only", "idle, unlimited", "--accel", "soft",
                "--warmup-runs", "1", "--against-qemu", "--qemu-peer", peer.toString(), "--qemu", peer.toString(),
                "--json");
        assertEquals(0, r.status(), r.err());
        assertEquals("64 idle tcg 0 1000G 300 --prefill 1 QEMU=" + peer, Files.readString(args).strip());
        JsonNode o = new ObjectMapper().readTree(r.out());
        JsonNode q = o.get("qemu-runs").get(0);
        assertEquals("completed", q.get("status").asText());
        assertEquals(100000, q.get("total-time-ms").asLong());
        JsonNode c = o.get("against-qemu").get(0);
        assertEquals("idle, unlimited", c.get("scenario").asText());
        double ferryTotal = o.get("runs").get(0).get("total-time-ms").asDouble();
        assertEquals(ferryTotal, c.get("ferry-total-time-ms").asDouble());
        assertEquals(Math.round(ferryTotal / 100000 * 100) / 100.0, c.get("total-time-ratio").asDouble());
        assertTrue(c.get("target-met").asBoolean(), "a 64 MiB migration beats 100 s: " + c);
        // The stand-in runs no QEMU: its CPU is not known, and the target does without it.
        assertTrue(q.get("cpu-seconds").isNull() && c.get("qemu-cpu-seconds").isNull(), c.toString());
        assertTrue(c.get("ferry-cpu-seconds").asDouble() > 0, c.toString());
        JsonNode run = o.get("runs").get(0);
        assertTrue(run.get("verified").asBoolean(), run.toString());
        assertTrue(run.get("cpu-seconds").asDouble() > 0, run.toString());
        assertTrue(run.has("iterations") && run.has("dirty-rate-mib-s"), run.toString());
        // End to end: bytes over the whole time, each side's own (64 MiB in 100 s for the stand-in).
        assertEquals(0.001, c.get("qemu-end-to-end-gib-s").asDouble(), c.toString());
        assertEquals(Math.round(run.get("transferred").asDouble() / (1L << 30) / (ferryTotal / 1000) * 1000) / 1000.0,
                c.get("ferry-end-to-end-gib-s").asDouble(), c.toString());
        // One migration warmed the JIT first; it is reported, and not among the runs.
        JsonNode warmup = o.get("warm-up-runs");
        assertEquals(1, warmup.size(), o.toString());
        assertEquals("completed", warmup.get(0).get("status").asText(), warmup.toString());
        assertEquals(1, o.get("runs").size(), o.toString());
        // Throughput after setup runs to the guest running at the destination: the source's
        // check of the digests after that is in the total time, not in the throughput's.
        long transferTime = run.get("total-time-ms").asLong() - run.get("setup-time-ms").asLong()
                - run.get("verify-time-ms").asLong();
        assertTrue(run.get("verify-time-ms").asLong() >= 0 && transferTime > 0, run.toString());
        assertEquals(Math.round(run.get("transferred").asDouble() / (1L << 30) / (transferTime / 1000.0) * 1000)
                / 1000.0, run.get("throughput-gib-s").asDouble(), 0.0011, run.toString());
        // After setup, over the plain TCP copy measured right after the run.
        assertEquals(Math.round(run.get("throughput-gib-s").asDouble() / run.get("baseline-tcp-copy-gib-s").asDouble()
                * 100) / 100.0, o.get("throughput-over-tcp-copy-median").asDouble(), 0.011, o.toString());
    }

    /**
     * QEMU's CPU over the migration, read from the processes under qemu-peer: here two stand-ins
     * with qemu-peer's arguments, a destination that idles, then burns a core for 0.5 s (its
     * "migration", the total-time the script reports) and a source that idles.
     */
    @Test
    void qemusCpuIsReadFromItsProcessesOverTheMigration(@TempDir Path dir) throws Exception {
        Path peer = dir.resolve("qemu-peer.sh");
        String burn = "e=$(( ${EPOCHREALTIME/./} + 500000 )); while (( ${EPOCHREALTIME/./} < e )); do :; done";
        Files.writeString(peer, "#!/bin/bash\n"
                + "bash -c 'sleep 0.8; " + burn + "; sleep 0.4' qemu -incoming defer &\n"
                + "bash -c 'sleep 1.7; true' qemu -qmp unix:src.qmp &\n"
                + "wait\n"
                + "echo '{\"ok\": true, \"status\": \"completed\", \"total-time\": 500, \"setup-time\": 1, "
                + "\"downtime\": 20, \"ram\": {\"transferred\": 1}}'\n");
        Files.setPosixFilePermissions(peer, PosixFilePermissions.fromString("rwxr-xr-x"));
        QemuPeer.Result r = new QemuPeer(peer, "/bin/true").run(64L << 20, 0, false, 0, 300);
        assertTrue(r.ok(), r.toString());
        // Up to 0.5 s: the stand-in burns a core for 0.5 s of wall time, less if it waits for one.
        assertTrue(r.cpuSeconds() >= 0.15 && r.cpuSeconds() <= 0.6, "CPU-seconds " + r.cpuSeconds());
    }

    @Test
    void withoutQemuOrTheScriptItSaysWhatToDo(@TempDir Path dir) {
        String msg = usageError(ferry("bench", "migration", "--against-qemu", "--qemu-peer", dir.resolve("none.sh")
                .toString()));
        assertTrue(msg.contains("--qemu-peer") && msg.contains("none.sh"), msg);
        msg = usageError(ferry("bench", "migration", "--against-qemu", "--qemu-peer", "/bin/true", "--qemu",
                "/nonexistent/qemu-system-x86_64"));
        assertTrue(msg.contains("apt-get install -y qemu-system-x86"), msg);
        msg = usageError(ferry("bench", "migration", "--warmup-runs", "6"));
        assertTrue(msg.contains("--warmup-runs must be 0 to 5"), msg);
    }
}
