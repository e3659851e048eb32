package dev.ferry.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.ferry.migration.bootstrap.Bootstrap;
import dev.ferry.migration.bootstrap.Plan;
import dev.ferry.migration.bootstrap.TrackedMachine;
import dev.ferry.migration.dirtyrate.DirtyRateMeasurement;
import dev.ferry.migration.dirtyrate.DirtyRateResult;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.PrintWriter;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code ferry dirtyrate}: run a guest and measure its dirty rate as the trackers see it. */
@Command(name = "dirtyrate", mixinStandardHelpOptions = true,
        description = {"Run a guest workload and measure the dirty rate its trackers report, the pages per sync "
                + "and the cost of a sync (like QEMU's calc-dirty-rate)."})
final class DirtyRateCommand implements Callable<Integer> {

    @Mixin
    MachineOptions machine;

    @Option(names = "--seconds", paramLabel = "S", defaultValue = "5",
            description = "How long to measure. Default: ${DEFAULT-VALUE}.")
    double seconds;

    @Option(names = "--sync-interval", paramLabel = "MS", defaultValue = "100",
            description = "Milliseconds between dirty-log syncs. Default: ${DEFAULT-VALUE}.")
    long syncIntervalMs;

    @Option(names = "--json", description = "Print the result as JSON.")
    boolean json;

    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Override
    public Integer call() throws Exception {
        if (!(seconds > 0) || seconds > 86400) {
            throw new IllegalArgumentException("--seconds must be more than 0 and at most 86400, got " + seconds);
        }
        Duration duration = Duration.ofNanos((long) (seconds * 1e9));
        if (syncIntervalMs < 1 || syncIntervalMs > duration.toMillis()) {
            throw new IllegalArgumentException("--sync-interval must be between 1 ms and the measured time, got "
                    + syncIntervalMs);
        }
        machine.requireHostMemory(1, "the guest");
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        Bootstrap bootstrap = Bootstrap.create(Ferry.plugins(spec));
        Plan plan = bootstrap.plan(machine.accelerator, machine.trackers, machine.options());
        DirtyRateResult r;
        try (TrackedMachine tracked = bootstrap.build(plan, machine.config(), bootstrap.devices(machine.deviceSpecs()));
             Progress progress = new Progress(err, json)) {
            r = new DirtyRateMeasurement(tracked, duration, Duration.ofMillis(syncIntervalMs))
                    .run(p -> progress.update(p[0], String.format("%.1f MiB/s", p[1])));
        }
        if (json) {
            Map<String, Object> o = new LinkedHashMap<>();
            o.put("dirty-rate", round(r.dirtyRateMiBps()));
            o.put("target-rate", machine.rate);
            o.put("guest-write-rate", round(r.guestWriteRateMiBps()));
            o.put("accelerator", r.accelerator());
            o.put("trackers", r.trackers());
            o.put("workload", machine.pattern.toString());
            o.put("memory", machine.memory);
            o.put("vcpus", machine.vcpus);
            o.put("seconds", round(r.seconds()));
            o.put("sync-interval-ms", syncIntervalMs);
            o.put("syncs", r.syncs());
            o.put("pages-reported", r.pagesReported());
            o.put("pages-per-sync", round(r.pagesPerSync()));
            o.put("sync-cost-mean-us", round(r.syncMeanMicros()));
            o.put("sync-cost-max-us", round(r.syncMaxMicros()));
            out.println(new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(o));
        } else {
            out.printf("dirty rate      %.1f MiB/s (target %s)%n", r.dirtyRateMiBps(),
                    machine.rate == 0 ? "unlimited" : String.format("%.0f MiB/s", machine.rate));
            out.printf("guest writes    %.1f MiB/s%n", r.guestWriteRateMiBps());
            out.printf("guest           %s RAM, %d vCPU%s, %s workload, %s accelerator%n", Sizes.format(machine.memory),
                    machine.vcpus, machine.vcpus == 1 ? "" : "s", machine.pattern, r.accelerator());
            out.printf("trackers        %s%n", String.join(",", r.trackers()));
            out.printf("syncs           %d over %.2f s (every %d ms), %.0f pages per sync%n", r.syncs(), r.seconds(),
                    syncIntervalMs, r.pagesPerSync());
            out.printf("sync cost       mean %.3f ms, max %.3f ms%n", r.syncMeanMicros() / 1e3, r.syncMaxMicros() / 1e3);
        }
        return 0;
    }

    private static double round(double v) {
        return Math.round(v * 100) / 100.0;
    }
}
