package dev.ferry.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;

/**
 * Real QEMU migrations beside Ferry's: runs {@code qemu-peer.sh} (../shared/tools/qemu-peer),
 * which migrates a guest between two local QEMU processes and prints QEMU's own query-migrate
 * figures as one JSON line.
 */
final class QemuPeer {

    /** Where the script is from the project root, where {@code ./ferry} runs. */
    static final String DEFAULT_SCRIPT = "../shared/tools/qemu-peer/qemu-peer.sh";

    /**
     * One QEMU migration's figures, as query-migrate names them, and the CPU-seconds both QEMUs
     * spent on it ({@link QemuCpu}; NaN where that could not be read).
     */
    record Result(boolean ok, String status, long totalTimeMs, long setupTimeMs, long downtimeMs, long transferred,
                  String error, double cpuSeconds) {

        Result withCpuSeconds(double seconds) {
            return new Result(ok, status, totalTimeMs, setupTimeMs, downtimeMs, transferred, error, seconds);
        }
    }

    private final Path script;
    private final String qemu;

    /**
     * @param script the qemu-peer script
     * @param qemu   the QEMU binary it runs: a name on the PATH, or a path
     */
    QemuPeer(Path script, String qemu) {
        this.script = script;
        this.qemu = qemu;
    }

    /** @return why QEMU migrations cannot run here, with what to do; empty if they can */
    Optional<String> missing() {
        if (!Files.isExecutable(script)) {
            return Optional.of("--against-qemu needs " + script + " (the qemu-peer tool), which is not there or not "
                    + "executable; give its path with --qemu-peer");
        }
        boolean found = qemu.contains("/") ? Files.isExecutable(Path.of(qemu))
                : List.of(System.getenv().getOrDefault("PATH", "").split(File.pathSeparator)).stream()
                .anyMatch(d -> !d.isEmpty() && Files.isExecutable(Path.of(d, qemu)));
        return found ? Optional.empty() : Optional.of("--against-qemu needs QEMU, and " + qemu + " is not installed: "
                + "apt-get install -y qemu-system-x86");
    }

    /**
     * Migrates a QEMU guest whose every page holds data, as Ferry's bench guest.
     *
     * @param memoryBytes  guest RAM
     * @param rateMiBps    what the guest dirties, 0 for idle
     * @param kvm          whether QEMU runs on KVM (else TCG)
     * @param maxBandwidth bytes per second, 0 for no limit
     * @param downtimeMs   the downtime limit
     */
    Result run(long memoryBytes, double rateMiBps, boolean kvm, long maxBandwidth, long downtimeMs)
            throws IOException, InterruptedException {
        ProcessBuilder pb = new ProcessBuilder(script.toString(), Long.toString(memoryBytes >> 20),
                rateMiBps == 0 ? "idle" : Long.toString(Math.round(rateMiBps)), kvm ? "kvm" : "tcg", "0",
                // QEMU's max-bandwidth has no "unlimited": far above any loopback link.
                maxBandwidth == 0 ? "1000G" : Long.toString(maxBandwidth), Long.toString(downtimeMs), "--prefill", "1")
                .redirectError(ProcessBuilder.Redirect.DISCARD);
        pb.environment().put("QEMU", qemu);
        Process p = pb.start();
        String out;
        List<QemuCpu.Sample> cpu;
        try (QemuCpu.Sampler sampler = new QemuCpu.Sampler(p.toHandle())) {
            // qemu-peer cancels a migration that runs past its --timeout (60 s) by itself.
            out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            p.waitFor();
            cpu = sampler.samples();
        }
        Result r = parse(out);
        return r.ok() ? r.withCpuSeconds(QemuCpu.overMigration(cpu, r.totalTimeMs()).orElse(Double.NaN)) : r;
    }

    /** @return the figures of the last JSON line qemu-peer printed */
    static Result parse(String out) {
        String line = out.lines().filter(l -> l.startsWith("{")).reduce((a, b) -> b).orElse(null);
        if (line == null) {
            return failed("qemu-peer printed no result" + (out.isBlank() ? "" : ": " + out.strip()));
        }
        JsonNode j;
        try {
            j = new ObjectMapper().readTree(line);
        } catch (IOException e) {
            return failed("qemu-peer printed something else than JSON: " + line);
        }
        return new Result(j.path("ok").asBoolean(false), j.path("status").asText("failed"),
                j.path("total-time").asLong(), j.path("setup-time").asLong(), j.path("downtime").asLong(),
                j.path("ram").path("transferred").asLong(), j.path("error").asText(""), Double.NaN);
    }

    private static Result failed(String why) {
        return new Result(false, "failed", 0, 0, 0, 0, why, Double.NaN);
    }
}
