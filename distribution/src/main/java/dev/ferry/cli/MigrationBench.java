package dev.ferry.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.ferry.machine.Machine;
import dev.ferry.machine.MachineConfig;
import dev.ferry.machine.MemoryBackend;
import dev.ferry.memory.MemfdRamBlock;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import dev.ferry.migration.Incoming;
import dev.ferry.migration.LoopbackMigration;
import dev.ferry.migration.timeline.Timeline;
import dev.ferry.migration.timeline.TimelineSvg;
import dev.ferry.migration.MigrationParameters;
import dev.ferry.migration.MigrationStats;
import dev.ferry.migration.MigrationStatus;
import dev.ferry.migration.bootstrap.Bootstrap;
import dev.ferry.migration.bootstrap.Plan;
import dev.ferry.migration.bootstrap.TrackedMachine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.PrintWriter;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * {@code ferry bench migration}: whole migrations of a guest whose RAM holds data (not zeros,
 * which would make the stream trivially small), idle and under load, over loopback TCP.
 */
@Command(name = "migration", mixinStandardHelpOptions = true,
        description = {"Migrate a guest with non-zero RAM: idle, and at 100 and 400 MiB/s of random dirtying, with "
                + "max-bandwidth 1 GiB/s and downtime-limit 300 ms; then idle with no bandwidth limit. Reports total "
                + "time, downtime and throughput, and checks the targets (downtime at most 10%% over the limit; idle "
                + "unlimited throughput after setup at least 0.9x a plain TCP copy of the same RAM, measured just "
                + "before and just after it). The destination is started first, as qemu-peer starts QEMU's: its RAM "
                + "is faulted in before the migration, and that CPU time counts in Ferry's CPU-seconds. With "
                + "--against-qemu each run is followed by the same scenario on real QEMU (../shared/tools/qemu-peer), "
                + "and the medians are compared."})
final class MigrationBench implements Callable<Integer> {

    @Option(names = "--mem", paramLabel = "SIZE", defaultValue = "1G", converter = MachineOptions.SizeConverter.class,
            description = "Guest RAM. Default: ${DEFAULT-VALUE}.")
    long memory;

    @Option(names = "--accel", defaultValue = "auto", description = "Accelerator. Default: ${DEFAULT-VALUE}.")
    String accelerator;

    @Option(names = "--trackers", defaultValue = "auto", description = "Trackers. Default: ${DEFAULT-VALUE}.")
    String trackers;

    @Option(names = "--vcpus", defaultValue = "1", description = "vCPUs. Default: ${DEFAULT-VALUE}.")
    int vcpus;

    @Option(names = "--runs", defaultValue = "1", description = "Runs of each scenario. Default: ${DEFAULT-VALUE}.")
    int runs;

    @Option(names = "--warmup-runs", paramLabel = "N", defaultValue = "3",
            description = "Migrations of the idle unlimited scenario run first and not counted, as a benchmark "
                    + "harness warms up: the JIT compiles the migration's code during a JVM's first migrations "
                    + "(on this 2-core host the third is the first at full speed), on the cores the migration "
                    + "needs. Their figures are printed. 0 measures a cold JVM, as a single ferry migrate is. "
                    + "Default: ${DEFAULT-VALUE}.")
    int warmupRuns;

    @Option(names = "--only", paramLabel = "TEXT", description = "Run only the scenarios whose name contains TEXT.")
    String only;

    @Option(names = "--json", description = "Print the results as JSON.")
    boolean json;

    @Option(names = "--against-qemu",
            description = "After each run, migrate the same scenario with real QEMU (qemu-peer), and compare: total "
                    + "time, setup, downtime and CPU-seconds, medians and ratios.")
    boolean againstQemu;

    @Option(names = "--qemu-peer", paramLabel = "PATH", defaultValue = QemuPeer.DEFAULT_SCRIPT,
            description = "The qemu-peer script for --against-qemu. Default: ${DEFAULT-VALUE}.")
    java.nio.file.Path qemuPeerScript;

    @Option(names = "--qemu", paramLabel = "BINARY", defaultValue = "${env:QEMU:-qemu-system-x86_64}",
            description = "The QEMU that --against-qemu runs. Default: ${DEFAULT-VALUE}.")
    String qemuBinary;

    @Option(names = "--timeline-dir", paramLabel = "DIR",
            description = "Draw each run's timeline (as migrate --timeline) into DIR, one SVG per run.")
    java.nio.file.Path timelineDir;

    @picocli.CommandLine.Mixin
    BenchCheck check;

    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    /** Longest wait for the destination's RAM to be faulted in before a run (1 GiB takes 1–2 s here). */
    private static final long PREPARE_TIMEOUT_MS = 60_000;

    /** Throughput after setup over a plain TCP copy's, idle and unlimited (issue 14). */
    private static final double WIRE_RATIO_TARGET = 0.9;

    private record Scenario(String name, Pattern pattern, double rate, long maxBandwidth) {
    }

    /**
     * A Ferry run's figures, the CPU-seconds the process spent on it, and whether the destination
     * ran the guest and found its RAM as the source's.
     */
    private record FerryRun(MigrationStats stats, double cpuSeconds, boolean destinationOk, boolean verified) {
    }

    @Override
    public Integer call() throws Exception {
        if (runs < 1 || runs > 20) {
            throw new IllegalArgumentException("--runs must be 1 to 20");
        }
        if (warmupRuns < 0 || warmupRuns > 5) {
            throw new IllegalArgumentException("--warmup-runs must be 0 to 5");
        }
        if (timelineDir != null && !java.nio.file.Files.isDirectory(timelineDir)) {
            throw new IllegalArgumentException("--timeline-dir " + timelineDir + ": no such directory");
        }
        QemuPeer qemu = againstQemu ? new QemuPeer(qemuPeerScript, qemuBinary) : null;
        if (qemu != null) {
            qemu.missing().ifPresent(why -> {
                throw new IllegalArgumentException(why);
            });
        }
        List<Map<String, Object>> qemuRows = new ArrayList<>();
        // Per scenario: Ferry's and QEMU's figures, for the medians compared at the end.
        Map<String, List<FerryRun>> ferryRuns = new LinkedHashMap<>();
        Map<String, List<QemuPeer.Result>> qemuRuns = new LinkedHashMap<>();
        long gib = 1L << 30;
        List<Scenario> scenarios = List.of(
                new Scenario("idle, 1 GiB/s", Pattern.IDLE, 0, gib),
                new Scenario("100 MiB/s, 1 GiB/s", Pattern.RANDOM, 100, gib),
                new Scenario("400 MiB/s, 1 GiB/s", Pattern.RANDOM, 400, gib),
                new Scenario("idle, unlimited", Pattern.IDLE, 0, 0));
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        Bootstrap bootstrap = Bootstrap.create(Ferry.plugins(spec));
        Plan plan = bootstrap.plan(accelerator, trackers, Map.of());
        long limitMs = 300;
        List<Map<String, Object>> rows = new ArrayList<>();
        boolean downtimeOk = true;
        List<Double> idleUnlimited = new ArrayList<>();
        List<Double> baselines = new ArrayList<>();
        // Each idle unlimited run's throughput over the TCP copy measured around it.
        List<Double> wireRatios = new ArrayList<>();
        List<Map<String, Object>> warmups = new ArrayList<>();
        Scenario idleUnlimitedScenario = scenarios.getLast();
        for (int run = 1; run <= warmupRuns; run++) {
            err.printf("ferry bench migration: warm-up %d of %d (%s, not counted)...%n", run, warmupRuns,
                    idleUnlimitedScenario.name());
            double before = baseline(memory);
            FerryRun fr = migrate(bootstrap, plan, idleUnlimitedScenario, parameters(idleUnlimitedScenario, limitMs),
                    run, new Timeline());
            MigrationStats s = fr.stats();
            double throughput = s.bytesPerSecondAfterSetup() / gib;
            double baseline = (before + baseline(memory)) / 2;
            if (!json) {
                out.printf("warm-up %d (not counted): %s, %s, total %d ms, %.2f GiB/s after setup (the TCP copy "
                                + "%.2f GiB/s), %.2f cpu s%n", run, idleUnlimitedScenario.name(),
                        s.status().qemuName(), s.totalTimeMs(), throughput, baseline, fr.cpuSeconds());
            }
            Map<String, Object> row = new LinkedHashMap<>();
            row.put("run", run);
            row.put("status", s.status().qemuName());
            row.put("total-time-ms", s.totalTimeMs());
            row.put("throughput-gib-s", round3(throughput));
            row.put("baseline-tcp-copy-gib-s", round3(baseline));
            row.put("cpu-seconds", Math.round(fr.cpuSeconds() * 100) / 100.0);
            warmups.add(row);
        }
        if (!json) {
            out.printf("guest %s RAM, %d vCPU, accelerator %s, trackers %s; downtime-limit %d ms%n",
                    Sizes.format(memory), vcpus, plan.accelerator().name(), plan.trackerNames(), limitMs);
            out.printf("%-20s %4s %9s %9s %10s %10s %12s %6s %9s %6s%n", "scenario", "run", "total ms", "setup ms",
                    "downtime", "expected", "throughput", "syncs", "throttle", "cpu s");
        }
        for (Scenario sc : scenarios) {
            if (only != null && !sc.name().contains(only)) {
                continue;
            }
            for (int run = 1; run <= runs; run++) {
                MigrationParameters params = parameters(sc, limitMs);
                Timeline timeline = new Timeline();
                err.printf("ferry bench migration: %s, run %d...%n", sc.name(), run);
                boolean idleUnlimitedRun = sc.maxBandwidth() == 0 && sc.pattern() == Pattern.IDLE;
                // The copy runs just before the migration and just after it, and their mean is
                // the baseline: this host's loopback varies by a third from one second to the next.
                double before = idleUnlimitedRun ? baseline(memory) : 0;
                FerryRun fr = migrate(bootstrap, plan, sc, params, run, timeline);
                MigrationStats s = fr.stats();
                double cpuSeconds = fr.cpuSeconds();
                boolean destinationOk = fr.destinationOk();
                boolean verified = fr.verified();
                String timelineFile = null;
                if (timelineDir != null) {
                    java.nio.file.Path f = timelineDir.resolve(sc.name().replaceAll("[^A-Za-z0-9]+", "-")
                            + "-run" + run + ".svg");
                    java.nio.file.Files.writeString(f, TimelineSvg.render(timeline, params.downtimeLimit(),
                            "ferry bench migration: " + sc.name() + ", run " + run));
                    timelineFile = f.toString();
                }
                // Throughput while transferring: from the end of setup to the guest running at the
                // destination (QEMU's final mbps; the source's check of the digests after it is in
                // the total time, not here).
                double throughput = s.bytesPerSecondAfterSetup() / gib;
                boolean ok = s.status() == MigrationStatus.COMPLETED && destinationOk;
                downtimeOk &= ok && s.downtimeMs() <= limitMs * 1.1;
                double baseline = 0;
                if (idleUnlimitedRun) {
                    idleUnlimited.add(throughput);
                    baseline = (before + baseline(memory)) / 2;
                    baselines.add(baseline);
                    wireRatios.add(throughput / baseline);
                }
                Map<String, Object> row = new LinkedHashMap<>();
                row.put("scenario", sc.name());
                row.put("run", run);
                row.put("status", s.status().qemuName());
                row.put("total-time-ms", s.totalTimeMs());
                row.put("setup-time-ms", s.setupTimeMs());
                row.put("downtime-ms", s.downtimeMs());
                row.put("verify-time-ms", s.verifyTimeMs());
                row.put("expected-downtime-ms", s.expectedDowntimeMs());
                row.put("throughput-gib-s", round3(throughput));
                row.put("transferred", s.transferred());
                row.put("dirty-sync-count", s.dirtySyncCount());
                row.put("iterations", s.iterations());
                row.put("dirty-rate-mib-s", Math.round(s.dirtyBytesPerSecond() / (1 << 20) * 10) / 10.0);
                row.put("throttle", s.throttlePercent());
                row.put("verified", verified);
                row.put("cpu-seconds", Math.round(cpuSeconds * 100) / 100.0);
                if (timelineFile != null) {
                    row.put("timeline", timelineFile);
                }
                if (idleUnlimitedRun) {
                    row.put("baseline-tcp-copy-gib-s", round3(baseline));
                }
                rows.add(row);
                ferryRuns.computeIfAbsent(sc.name(), k -> new ArrayList<>()).add(fr);
                QemuPeer.Result q = null;
                if (qemu != null) {
                    err.printf("ferry bench migration: %s, run %d with QEMU...%n", sc.name(), run);
                    q = qemu.run(memory, sc.rate(), plan.accelerator().name().equals("kvm"), sc.maxBandwidth(),
                            limitMs);
                    qemuRuns.computeIfAbsent(sc.name(), k -> new ArrayList<>()).add(q);
                    Map<String, Object> qr = new LinkedHashMap<>();
                    qr.put("scenario", sc.name());
                    qr.put("run", run);
                    qr.put("status", q.status());
                    qr.put("total-time-ms", q.totalTimeMs());
                    qr.put("setup-time-ms", q.setupTimeMs());
                    qr.put("downtime-ms", q.downtimeMs());
                    qr.put("transferred", q.transferred());
                    qr.put("cpu-seconds", Double.isNaN(q.cpuSeconds()) ? null : Math.round(q.cpuSeconds() * 100) / 100.0);
                    if (!q.error().isEmpty()) {
                        qr.put("error", q.error());
                    }
                    qemuRows.add(qr);
                }
                if (!json) {
                    out.printf("%-20s %4d %9d %9d %10s %7d ms %6.2f GiB/s %6d %8d%% %6.2f%n", sc.name(), run,
                            s.totalTimeMs(), s.setupTimeMs(), ok ? s.downtimeMs() + " ms" : s.status().qemuName(),
                            s.expectedDowntimeMs(), throughput, s.dirtySyncCount(), s.throttlePercent(), cpuSeconds);
                    if (idleUnlimitedRun) {
                        out.printf("%-20s %4d %52.2f GiB/s%n", "  baseline TCP copy", run, baseline);
                    }
                    if (q != null && q.ok()) {
                        out.printf("%-20s %4d %9d %9d %10s %58s%n", "  QEMU", run, q.totalTimeMs(), q.setupTimeMs(),
                                q.downtimeMs() + " ms", Double.isNaN(q.cpuSeconds()) ? "?"
                                        : String.format("%.2f", q.cpuSeconds()));
                    } else if (q != null) {
                        out.printf("%-20s %4d %s%n", "  QEMU", run, q.status() + (q.error().isEmpty() ? ""
                                : " (" + q.error() + ")"));
                    }
                }
            }
        }
        double idleUnlimitedGiBps = idleUnlimited.stream().mapToDouble(d -> d).max().orElse(0);
        double wireRatio = median(wireRatios);
        boolean throughputOk = idleUnlimited.isEmpty() || wireRatio >= WIRE_RATIO_TARGET;
        List<Map<String, Object>> comparison = new ArrayList<>();
        boolean qemuOk = true;
        for (Map.Entry<String, List<QemuPeer.Result>> e : qemuRuns.entrySet()) {
            List<MigrationStats> f = ferryRuns.get(e.getKey()).stream().map(FerryRun::stats).toList();
            // QEMU's figures count where its migration completed.
            List<QemuPeer.Result> q = e.getValue().stream().filter(QemuPeer.Result::ok).toList();
            Map<String, Object> c = new LinkedHashMap<>();
            c.put("scenario", e.getKey());
            c.put("runs", e.getValue().size());
            c.put("qemu-completed", q.size());
            double fTotal = median(f, MigrationStats::totalTimeMs);
            double qTotal = median(q, QemuPeer.Result::totalTimeMs);
            double fDown = median(f, MigrationStats::downtimeMs);
            double qDown = median(q, QemuPeer.Result::downtimeMs);
            c.put("ferry-total-time-ms", fTotal);
            c.put("qemu-total-time-ms", qTotal);
            c.put("ferry-setup-time-ms", median(f, MigrationStats::setupTimeMs));
            c.put("qemu-setup-time-ms", median(q, QemuPeer.Result::setupTimeMs));
            c.put("ferry-downtime-ms", fDown);
            c.put("qemu-downtime-ms", qDown);
            c.put("total-time-ratio", qTotal == 0 ? 0 : Math.round(fTotal / qTotal * 100) / 100.0);
            // Bytes moved over the whole migration's time, as a user waiting for it sees it.
            c.put("ferry-end-to-end-gib-s", round3(median(f.stream().map(r -> endToEnd(r.transferred(),
                    r.totalTimeMs())).toList())));
            c.put("qemu-end-to-end-gib-s", round3(median(q.stream().map(r -> endToEnd(r.transferred(),
                    r.totalTimeMs())).toList())));
            double fCpu = median(ferryRuns.get(e.getKey()).stream().map(FerryRun::cpuSeconds).toList());
            // QEMU's CPU counts where it could be read (qemu-peer's QEMUs, sampled from outside).
            List<Double> qCpus = q.stream().map(QemuPeer.Result::cpuSeconds).filter(d -> !Double.isNaN(d)).toList();
            double qCpu = qCpus.isEmpty() ? Double.NaN : median(qCpus);
            c.put("ferry-cpu-seconds", Math.round(fCpu * 100) / 100.0);
            c.put("qemu-cpu-seconds", Double.isNaN(qCpu) ? null : Math.round(qCpu * 100) / 100.0);
            boolean met = qTotal > 0 && fTotal <= qTotal && fDown <= Math.max(qDown, limitMs)
                    && (Double.isNaN(qCpu) || fCpu <= qCpu);
            c.put("target-met", met);
            qemuOk &= met;
            comparison.add(c);
        }
        if (json) {
            Map<String, Object> o = new LinkedHashMap<>();
            o.put("warm-up-runs", warmups);
            o.put("runs", rows);
            o.put("downtime-target-met", downtimeOk);
            o.put("idle-unlimited-throughput-gib-s", idleUnlimitedGiBps);
            o.put("idle-unlimited-throughput-median-gib-s", median(idleUnlimited));
            o.put("baseline-tcp-copy-median-gib-s", median(baselines));
            o.put("throughput-over-tcp-copy-median", Math.round(wireRatio * 100) / 100.0);
            o.put("throughput-target-met", throughputOk);
            if (qemu != null) {
                o.put("qemu-runs", qemuRows);
                o.put("against-qemu", comparison);
                o.put("against-qemu-target-met", qemuOk);
            }
            out.println(new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(o));
        } else {
            out.printf("target: downtime <= %d ms (limit + 10%%) in every run: %s%n", limitMs * 11 / 10,
                    downtimeOk ? "met" : "MISSED");
            if (!idleUnlimited.isEmpty()) {
                out.printf("target: idle unlimited throughput after setup (to the guest running at the destination) "
                                + ">= %.1fx the plain TCP copy of the same RAM beside it: median %.2fx (%.2f GiB/s, "
                                + "best %.2f; the copy %.2f GiB/s), %s%n",
                        WIRE_RATIO_TARGET, wireRatio, median(idleUnlimited), idleUnlimitedGiBps, median(baselines),
                        throughputOk ? "met" : "MISSED");
            }
        }
        if (!json && qemu != null) {
            out.printf("%nmedians, Ferry / QEMU:%n%-20s %21s %21s %21s %21s %21s%n", "scenario", "total ms", "setup ms",
                    "downtime ms", "cpu s", "GiB/s end to end");
            for (Map<String, Object> c : comparison) {
                Object qCpu = c.get("qemu-cpu-seconds");
                out.printf("%-20s %9.0f / %-9.0f %9.0f / %-9.0f %9.0f / %-9.0f %9.2f / %-9s %9.2f / %-9.2f %.2fx%n",
                        c.get("scenario"), c.get("ferry-total-time-ms"), c.get("qemu-total-time-ms"),
                        c.get("ferry-setup-time-ms"), c.get("qemu-setup-time-ms"), c.get("ferry-downtime-ms"),
                        c.get("qemu-downtime-ms"), c.get("ferry-cpu-seconds"), qCpu == null ? "?" : qCpu,
                        c.get("ferry-end-to-end-gib-s"), c.get("qemu-end-to-end-gib-s"), c.get("total-time-ratio"));
            }
            out.printf("target: total time at most QEMU's, downtime at most QEMU's or the limit, CPU-seconds at most "
                    + "QEMU's where read (medians): %s%n", qemuOk ? "met" : "MISSED");
        }
        return check.exitStatus(downtimeOk && throughputOk && qemuOk);
    }

    private static MigrationParameters parameters(Scenario sc, long limitMs) {
        return MigrationParameters.defaults().withMaxBandwidth(sc.maxBandwidth())
                .withDowntimeLimit(Duration.ofMillis(limitMs)).withTimeout(Duration.ofMinutes(5));
    }

    /** Builds a destination and a source guest for {@code sc}, and migrates the one into the other. */
    private FerryRun migrate(Bootstrap bootstrap, Plan plan, Scenario sc, MigrationParameters params, int run,
                             Timeline timeline) throws Exception {
        Workload w = new Workload(sc.pattern(), 0, 0, sc.rate(), 4096, 0.1, 0.9, run);
        // The destination is started first, as qemu-peer starts QEMU's: its RAM is made and
        // faulted in while the source guest is built, filled and warmed up.
        try (Incoming destination = bootstrap.incoming(MigrateCommand.totalMemory(), true,
                Incoming.DeviceLoad.BATCHED)) {
            MemoryBackend destinationRam = destination.prepareRam(memory);
            try (TrackedMachine source = bootstrap.build(plan, MachineConfig.of(memory, vcpus, w))) {
                fillWithData(source.machine());
                source.machine().start();
                Thread.sleep(300);
                destinationRam.awaitPreallocation(PREPARE_TIMEOUT_MS);
                // Both ends run in this process: its CPU time is the migration's, source and destination
                // (and the guest's vCPUs, whose share an idle guest keeps small), and so is the
                // destination's preallocation, done before it.
                long cpuBefore = processCpuNanos();
                LoopbackMigration.Outcome o = LoopbackMigration.run(source, params, destination, timeline);
                double cpuSeconds = (processCpuNanos() - cpuBefore + destinationRam.preallocationCpuNanos()) / 1e9;
                o.destination().ifPresent(d -> d.machine().close());
                return new FerryRun(o.stats(), cpuSeconds, o.destination().isPresent(),
                        o.destination().map(Incoming.Result::verified).orElse(false));
            }
        }
    }

    private static long processCpuNanos() {
        return ((com.sun.management.OperatingSystemMXBean) java.lang.management.ManagementFactory
                .getOperatingSystemMXBean()).getProcessCpuTime();
    }

    private static double endToEnd(long transferred, long totalTimeMs) {
        return totalTimeMs <= 0 ? 0 : transferred / (double) (1L << 30) / (totalTimeMs / 1000.0);
    }

    private static double round3(double v) {
        return Math.round(v * 1000) / 1000.0;
    }

    static <T> double median(List<T> runs, java.util.function.ToLongFunction<T> figure) {
        return median(runs.stream().map(r -> (double) figure.applyAsLong(r)).toList());
    }

    static double median(List<Double> values) {
        if (values.isEmpty()) {
            return 0;
        }
        double[] v = values.stream().mapToDouble(d -> d).sorted().toArray();
        return v.length % 2 == 1 ? v[v.length / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
    }

    /** The plain TCP copy beside which the unlimited migration's throughput is read. */
    private static double baseline(long bytes) throws Exception {
        try (MemfdRamBlock from = MemfdRamBlock.allocate("baseline-from", bytes);
             MemfdRamBlock to = MemfdRamBlock.allocate("baseline-to", bytes)) {
            // As in a migration: the source's RAM holds data, the destination's is faulted in.
            fillWithData(from.host());
            to.preallocate();
            return LoopbackBaseline.measure(from, to);
        }
    }

    /**
     * Fills the guest's RAM with data, all but what the accelerator reserves (the kvm
     * accelerator's guest code and page tables live there: overwritten, the guest would fault).
     */
    static void fillWithData(Machine machine) {
        MemorySegment ram = machine.ram().host();
        fillWithData(ram.asSlice(Math.min(ram.byteSize(), machine.accelerator().reservedRamBytes())));
    }

    /** Gives every page distinct non-zero contents, as a guest that has booted and run would have. */
    static void fillWithData(MemorySegment ram) {
        ram.fill((byte) 0xa5);
        for (long off = 0; off < ram.byteSize(); off += 4096) {
            ram.set(ValueLayout.JAVA_LONG_UNALIGNED, off + 8, off);
        }
    }
}
