package dev.ferry.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.ferry.api.Device;
import dev.ferry.machine.Machine;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.SequentialImage;
import dev.ferry.migration.Incoming;
import dev.ferry.migration.LoopbackMigration;
import dev.ferry.migration.MigrationParameters;
import dev.ferry.migration.MigrationStats;
import dev.ferry.migration.MigrationStatus;
import dev.ferry.migration.bootstrap.MigrationSettings;
import dev.ferry.migration.bootstrap.MigrationTarget;
import dev.ferry.migration.bootstrap.Orchestrator;
import dev.ferry.migration.bootstrap.Plugins;
import dev.ferry.migration.bootstrap.TrackedMachine;
import dev.ferry.migration.channel.MigrationUri;
import dev.ferry.migration.timeline.Timeline;
import dev.ferry.migration.timeline.TimelineSvg;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.PrintWriter;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.io.UncheckedIOException;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.Callable;
import java.util.function.Consumer;

/** {@code ferry migrate}: live-migrate a running guest and verify the result. */
@Command(name = "migrate", mixinStandardHelpOptions = true,
        description = {"Start a guest, let it run its workload, and live-migrate it while it runs. Without --to, "
                + "the destination runs in this process over loopback TCP and the result is verified end to end."})
final class MigrateCommand implements Callable<Integer> {

    @Mixin
    MachineOptions machine;

    @Option(names = "--to", paramLabel = "URI",
            description = "Send to another process or a file: tcp:HOST:PORT, unix:PATH or file:PATH.")
    String to;

    @Option(names = "--max-bandwidth", paramLabel = "SIZE", converter = MachineOptions.SizeConverter.class,
            defaultValue = "0", description = "Bytes per second the stream may use (e.g. 1G); 0 for no limit. "
            + "Default: ${DEFAULT-VALUE}.")
    long maxBandwidth;

    @Option(names = "--downtime-limit", paramLabel = "MS", defaultValue = "300",
            description = "Longest the guest may be stopped at switchover, in ms. Default: ${DEFAULT-VALUE}.")
    long downtimeLimitMs;

    @Option(names = "--timeout", paramLabel = "S", defaultValue = "600",
            description = "Give up after this many seconds; the guest stays on the source. Default: ${DEFAULT-VALUE}.")
    long timeoutSeconds;

    @Option(names = "--no-auto-converge", negatable = false,
            description = "Do not throttle the guest when it dirties memory faster than the link sends.")
    boolean noAutoConverge;

    @Option(names = "--warmup", paramLabel = "MS", defaultValue = "500",
            description = "How long the guest runs before the migration starts, in ms. Default: ${DEFAULT-VALUE}.")
    long warmupMs;

    @Option(names = "--vmstate-load", paramLabel = "MODE", defaultValue = "batched",
            description = "How the destination applies device state: batched (all devices in one memory "
                    + "transaction, one topology update) or per-device (a commit per device, for comparison). "
                    + "Default: ${DEFAULT-VALUE}.")
    String vmstateLoad;

    @Option(names = "--json", description = "Print the statistics as JSON (query-migrate names).")
    boolean json;

    @Option(names = "--timeline", paramLabel = "FILE.svg",
            description = "Draw the migration over time into an SVG file a browser opens: remaining bytes, dirty "
                    + "rate, throughput and throttle, with syncs, passes and the switchover marked.")
    Path timelineFile;

    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    private static final double MIB = 1 << 20;

    @Override
    public Integer call() throws Exception {
        if (downtimeLimitMs < 1) {
            throw new IllegalArgumentException("--downtime-limit must be at least 1 ms, got " + downtimeLimitMs);
        }
        if (timeoutSeconds < 1) {
            throw new IllegalArgumentException("--timeout must be at least 1 s, got " + timeoutSeconds);
        }
        if (warmupMs < 0) {
            throw new IllegalArgumentException("--warmup must not be negative, got " + warmupMs);
        }
        MigrationParameters params = MigrationParameters.defaults().withMaxBandwidth(maxBandwidth)
                .withDowntimeLimit(Duration.ofMillis(downtimeLimitMs)).withTimeout(Duration.ofSeconds(timeoutSeconds))
                .withAutoConverge(!noAutoConverge);
        Optional<MigrationUri> target = to == null ? Optional.empty() : Optional.of(MigrationUri.parse(to));
        if (timelineFile != null) {
            requireWritable(timelineFile);
        }
        machine.requireHostMemory(target.isEmpty() ? 2 : 1,
                target.isEmpty() ? "the guest and its destination in this process" : "the guest");
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        Orchestrator orchestrator = Orchestrator.create(Ferry.plugins(spec), new MigrationSettings(machine.accelerator,
                machine.trackers, machine.options(), machine.config(), machine.deviceSpecs(), params, target,
                totalMemory(), !machine.noPrealloc, deviceLoad()));
        // Reach the destination before building the guest: a wrong address fails in
        // milliseconds, not after gigabytes were preallocated. Not a usage error: exit 1.
        MigrationTarget.Session session;
        try {
            session = orchestrator.connect();
        } catch (java.io.IOException e) {
            throw new UncheckedIOException(e.getMessage(), e);
        }
        try (session; TrackedMachine source = orchestrator.buildSource()) {
            source.machine().start();
            Thread.sleep(warmupMs);
            Map<String, Object> report;
            MigrationStats stats;
            Timeline timeline = new Timeline();
            try (Progress progress = new Progress(err, json)) {
                Consumer<MigrationStats> onProgress = s -> {
                    timeline.accept(s);
                    progress.update(fraction(s), status(s));
                };
                LoopbackMigration.Outcome outcome = orchestrator.migrate(session, source, onProgress);
                stats = outcome.stats();
                report = new LinkedHashMap<>(stats.toQemuMap());
                if (target.isEmpty()) {
                    report.putAll(checkDestination(outcome, machine, stats));
                } else if (stats.status() == MigrationStatus.COMPLETED) {
                    boolean file = target.get().scheme() == MigrationUri.Scheme.FILE;
                    report.put("verified", !file);
                    if (file) {
                        report.put("verified-why-not", "a file has no return path; the file carries the source's "
                                + "RAM digests, and `ferry incoming` of it checks them");
                    }
                }
            }
            List<Device> devices = source.machine().devices();
            if (!devices.isEmpty()) {
                Map<String, Object> ds = new LinkedHashMap<>();
                devices.forEach(d -> ds.put(d.id(), d.statistics()));
                report.put("devices", ds);
            }
            String where = session.description();
            if (timelineFile != null) {
                try {
                    Files.writeString(timelineFile, TimelineSvg.render(timeline, params.downtimeLimit(),
                            "ferry " + String.join(" ", spec.commandLine().getParseResult().originalArgs())));
                    report.put("timeline", timelineFile.toString());
                } catch (java.io.IOException e) {
                    err.println("ferry migrate: could not write the timeline to " + timelineFile + ": " + e.getMessage());
                    report.put("timeline-error", e.getMessage());
                }
            }
            if (json) {
                out.println(new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(report));
            } else {
                printSummary(out, stats, report, where, devices);
            }
            if (stats.status() != MigrationStatus.COMPLETED) {
                err.println("ferry migrate: " + stats.status().qemuName() + ": " + stats.error()
                        + " (the guest keeps running on the source)");
                return Ferry.FAILURE;
            }
            return report.containsKey("timeline-error") ? Ferry.FAILURE : 0;
        }
    }

    private static double fraction(MigrationStats s) {
        return s.total() == 0 ? 0 : Math.max(0, 1 - (double) s.remaining() / s.total());
    }

    private static String status(MigrationStats s) {
        return String.format("%s  iter %d  remaining %s  dirty %.0f MiB/s  %.0f MiB/s  throttle %d%%",
                s.status().qemuName(), s.iterations(), Sizes.format(s.remaining()),
                s.dirtyBytesPerSecond() / MIB, s.sentBytesPerSecond() / MIB, s.throttlePercent());
    }

    private static void printSummary(PrintWriter out, MigrationStats s, Map<String, Object> report, String where,
                                     List<Device> devices) {
        out.printf("status           %s%s%n", s.status().qemuName(), s.error().isEmpty() ? "" : " (" + s.error() + ")");
        out.printf("to               %s%n", where);
        out.printf("total time       %d ms (setup %d ms)%n", s.totalTimeMs(), s.setupTimeMs());
        if (s.status() == MigrationStatus.COMPLETED) {
            out.printf("downtime         %d ms (expected %d ms)%n", s.downtimeMs(), s.expectedDowntimeMs());
            if (s.verifyTimeMs() > 0) {
                out.printf("verified in      %d ms, while the guest ran at the destination%n", s.verifyTimeMs());
            }
        }
        out.printf("transferred      %s of %s RAM (%d pages sent, %d zero pages)%n", Sizes.format(s.transferred()),
                Sizes.format(s.total()), s.normal(), s.duplicate());
        out.printf("throughput       %.0f MiB/s after setup, to the guest running there%n",
                s.bytesPerSecondAfterSetup() / MIB);
        out.printf("iterations       %d, %d dirty syncs, throttle %d%%%n", s.iterations(), s.dirtySyncCount(),
                s.throttlePercent());
        out.printf("dirty rate       %.0f MiB/s (the guest), %.0f MiB/s sent%n", s.dirtyBytesPerSecond() / MIB,
                s.sentBytesPerSecond() / MIB);
        out.printf("trackers         %s%n", String.join(",", s.trackers()));
        for (Device d : devices) {
            Map<String, Long> st = d.statistics();
            out.printf("device           %s: %s written by DMA, %d log marks taken, %d memory-section scans in "
                            + "%d syncs%n", d.id(), Sizes.format(st.getOrDefault("dma-bytes", 0L)),
                    st.getOrDefault("marks-taken", 0L), st.getOrDefault("section-scans", 0L),
                    st.getOrDefault("log-syncs", 0L));
        }
        if (Boolean.TRUE.equals(report.get("verified"))) {
            out.printf("verified         yes: the destination's RAM digests match the source's%n");
        } else if (report.containsKey("verified")) {
            out.printf("verified         no%s%n", report.containsKey("verified-why-not")
                    ? ": " + report.get("verified-why-not") : "");
        }
        if (report.get("device-state-load") instanceof Incoming.DeviceLoadStats d) {
            out.printf("device state     %s%n", d.summary());
        }
        if (report.containsKey("destination-guest")) {
            out.printf("destination      %s%n", report.get("destination-guest"));
        }
        if (report.containsKey("timeline")) {
            out.printf("timeline         %s%n", report.get("timeline"));
        }
    }

    /** Refuses, before the migration, a timeline file that could not be written after it. */
    static void requireWritable(Path file) {
        Path dir = file.toAbsolutePath().getParent();
        if (Files.isDirectory(file)) {
            throw new IllegalArgumentException("--timeline " + file + ": is a directory; give a file name, e.g. "
                    + file.resolve("migration.svg"));
        }
        if (dir == null || !Files.isDirectory(dir)) {
            throw new IllegalArgumentException("--timeline " + file + ": directory " + dir + " does not exist");
        }
        if (!Files.isWritable(dir) || Files.exists(file) && !Files.isWritable(file)) {
            throw new IllegalArgumentException("--timeline " + file + ": cannot write there");
        }
    }

    static long totalMemory() {
        return ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean())
                .getTotalMemorySize();
    }

    /** Checks the guest goes on running at the destination; returns figures for the report. */
    private static Map<String, Object> checkDestination(LoopbackMigration.Outcome outcome, MachineOptions options,
                                                        MigrationStats stats) throws InterruptedException {
        Map<String, Object> r = new LinkedHashMap<>();
        if (outcome.destination().isEmpty()) {
            outcome.destinationError().ifPresent(e -> r.put("destination-error", e));
            // When the source gave up, the destination's own error is only the stream ending early.
            r.put("destination-guest", stats.status() == MigrationStatus.COMPLETED
                    ? "not started" + outcome.destinationError().map(e -> " (" + e + ")").orElse("")
                    : "not started: the source stopped the migration, and the destination discarded what it had "
                    + "received");
            return r;
        }
        Incoming.Result in = outcome.destination().get();
        r.put("device-state-load", in.deviceLoad());
        try (Machine dest = in.machine()) {
            long before = dest.pagesWritten();
            Thread.sleep(300);
            long after = dest.pagesWritten();
            boolean idle = options.pattern == Pattern.IDLE;
            boolean running = idle ? dest.vcpuFailure().isEmpty() : after > before;
            r.put("verified", in.verified());
            String guest = !running ? "guest NOT making progress"
                    : idle ? "guest running (idle workload)"
                    : "guest running, " + (after - before) + " pages written in 300 ms";
            if (options.pattern == Pattern.SEQUENTIAL) {
                dest.pause();
                Optional<String> bad = SequentialImage.check(dest.ram().host(), dest.config().workload(), dest.vcpus());
                guest += bad.map(b -> "; memory image BROKEN: " + b).orElse("; memory image consistent");
            }
            r.put("destination-guest", guest);
            r.put("destination-running", running);
        }
        return r;
    }

    private Incoming.DeviceLoad deviceLoad() {
        return IncomingCommand.vmstateLoad(vmstateLoad);
    }
}
