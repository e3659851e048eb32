package dev.ferry.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.ferry.machine.MachineConfig;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import dev.ferry.migration.Incoming;
import dev.ferry.migration.LoopbackMigration;
import dev.ferry.migration.MigrationParameters;
import dev.ferry.migration.MigrationStatus;
import dev.ferry.migration.bootstrap.MigrationSettings;
import dev.ferry.migration.bootstrap.MigrationTarget;
import dev.ferry.migration.bootstrap.Orchestrator;
import dev.ferry.migration.bootstrap.Plugins;
import dev.ferry.migration.bootstrap.TrackedMachine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.PrintWriter;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.Callable;

/**
 * {@code ferry bench vmstate-load}: seed 003's table. Whole migrations of an idle guest with
 * vhost devices, the destination applying device state in one memory transaction (batched)
 * or one per device, interleaved. The destination's listeners are the real ones: KVM's memory
 * slots where {@code /dev/kvm} is usable, every vhost dev's memory table, the trackers. Seed
 * 003 (QEMU, 8 virtio-net of 16 queues and 16 vhost-user-blk of 4): loading took 150 ms per
 * device and 30 ms batched, downtime 740 and 630 ms.
 */
@Command(name = "vmstate-load", mixinStandardHelpOptions = true,
        description = {"Seed 003: migrations with many vhost devices, the destination loading device state in one "
                + "memory transaction or one per device, interleaved; load time, topology commits, flat-view renders, "
                + "listener calls and downtime. Target: batched loads at least 5x faster on the big configuration, "
                + "with a lower downtime."})
final class VmstateLoadBench implements Callable<Integer> {

    /** The target: on the big configuration, per-device load time over batched. */
    static final double TARGET = 5;

    @Option(names = "--accel", paramLabel = "ACCEL", defaultValue = "auto",
            description = "Accelerator: auto (kvm where usable), kvm or soft. Default: ${DEFAULT-VALUE}.")
    String accelerator;

    @Option(names = "--mem", paramLabel = "SIZE", defaultValue = "256M", converter = MachineOptions.SizeConverter.class,
            description = "Guest RAM. Default: ${DEFAULT-VALUE}.")
    long memory;

    @Option(names = "--runs", defaultValue = "5",
            description = "Interleaved runs of every configuration and mode, after a warm-up. Default: ${DEFAULT-VALUE}.")
    int runs;

    @picocli.CommandLine.Mixin
    BenchCheck check;

    @Option(names = "--json", description = "Print the results as JSON.")
    boolean json;

    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    /** A device set-up of seed 003's table. */
    record Config(String name, int nets, int netQueues, int blks, int blkQueues) {
        List<String> specs() {
            return List.of("vhost-net:rate=0,queues=" + netQueues + ",count=" + nets,
                    "vhost-blk:rate=0,queues=" + blkQueues + ",count=" + blks);
        }
    }

    static final List<Config> CONFIGS = List.of(new Config("8 net x16 + 16 blk x4", 8, 16, 16, 4),
            new Config("8 net x1 + 16 blk x1", 8, 1, 16, 1), new Config("1 net x16 + 1 blk x4", 1, 16, 1, 4));
    static final List<Incoming.DeviceLoad> MODES = List.of(Incoming.DeviceLoad.PER_DEVICE, Incoming.DeviceLoad.BATCHED);

    /** The runs of one configuration and mode. */
    static final class Sample {
        final List<Incoming.DeviceLoadStats> loads = new ArrayList<>();
        final List<Double> downtimeMs = new ArrayList<>();

        double median(java.util.function.ToDoubleFunction<Incoming.DeviceLoadStats> f) {
            return MigrationBench.median(loads.stream().map(f::applyAsDouble).toList());
        }
    }

    @Override
    public Integer call() throws Exception {
        if (runs < 1 || runs > 20) {
            throw new IllegalArgumentException("--runs must be 1 to 20, got " + runs);
        }
        PrintWriter err = spec.commandLine().getErr();
        Plugins plugins = Ferry.plugins(spec);
        Map<String, Sample> samples = new LinkedHashMap<>();
        String trackers = "";
        // Run 0 warms up (the JIT compiles the load and listener paths) and is not counted. The
        // modes alternate which goes first, so neither always runs on a warmer host.
        for (int run = 0; run <= runs; run++) {
            for (Config c : CONFIGS) {
                List<Incoming.DeviceLoad> order = run % 2 == 0 ? MODES : MODES.reversed();
                for (Incoming.DeviceLoad mode : order) {
                    err.printf("ferry bench vmstate-load: %s, %s, %s%n", run == 0 ? "warm-up" : "run " + run + "/"
                            + runs, c.name(), mode);
                    Orchestrator o = Orchestrator.create(plugins, settings(c, mode));
                    trackers = o.plan().accelerator().name() + ", trackers " + o.plan().trackerNames();
                    LoopbackMigration.Outcome outcome = migrate(o);
                    if (run > 0) {
                        Sample s = samples.computeIfAbsent(key(c, mode), k -> new Sample());
                        s.loads.add(outcome.destination().orElseThrow().deviceLoad());
                        s.downtimeMs.add((double) outcome.stats().downtimeMs());
                    }
                }
            }
        }
        boolean met = ratio(samples, CONFIGS.getFirst(), l -> l.nanos()) >= TARGET
                && downtimeGain(samples, CONFIGS.getFirst()) > 0;
        PrintWriter out = spec.commandLine().getOut();
        if (json) {
            printJson(out, samples, trackers, met);
        } else {
            printTable(out, samples, trackers, met);
        }
        return check.exitStatus(met);
    }

    private MigrationSettings settings(Config c, Incoming.DeviceLoad mode) {
        Workload idle = new Workload(Pattern.IDLE, 0, 0, 0, Workload.PAGE_SIZE, 0.1, 0.9, 1);
        MigrationParameters params = MigrationParameters.defaults().withTimeout(Duration.ofSeconds(120));
        // RAM preallocated on both sides, as by default: otherwise the post-loads' first reads of
        // the used rings fault pages in, a cost of the destination's memory, not of the load.
        return new MigrationSettings(accelerator, "auto", Map.of(), MachineConfig.of(memory, 1, idle), c.specs(),
                params, Optional.empty(), memory * 2, true, mode);
    }

    private static LoopbackMigration.Outcome migrate(Orchestrator o) throws Exception {
        try (MigrationTarget.Session session = o.connect(); TrackedMachine source = o.buildSource()) {
            source.machine().start();
            LoopbackMigration.Outcome outcome = o.migrate(session, source, s -> { });
            if (outcome.stats().status() != MigrationStatus.COMPLETED || outcome.destination().isEmpty()) {
                throw new IllegalStateException("a migration failed: " + outcome.stats().error()
                        + outcome.destinationError().map(e -> " (destination: " + e + ")").orElse(""));
            }
            outcome.destination().get().machine().close();
            return outcome;
        }
    }

    private static String key(Config c, Incoming.DeviceLoad mode) {
        return c.name() + "/" + mode;
    }

    /** @return the median over runs of per-device's figure over batched's, run by run */
    private double ratio(Map<String, Sample> samples, Config c,
                         java.util.function.ToDoubleFunction<Incoming.DeviceLoadStats> f) {
        Sample per = samples.get(key(c, Incoming.DeviceLoad.PER_DEVICE));
        Sample batched = samples.get(key(c, Incoming.DeviceLoad.BATCHED));
        List<Double> r = new ArrayList<>();
        for (int i = 0; i < Math.min(per.loads.size(), batched.loads.size()); i++) {
            r.add(f.applyAsDouble(per.loads.get(i)) / Math.max(1e-9, f.applyAsDouble(batched.loads.get(i))));
        }
        return MigrationBench.median(r);
    }

    /** @return the median over runs of per-device's downtime minus batched's, in ms */
    private double downtimeGain(Map<String, Sample> samples, Config c) {
        Sample per = samples.get(key(c, Incoming.DeviceLoad.PER_DEVICE));
        Sample batched = samples.get(key(c, Incoming.DeviceLoad.BATCHED));
        List<Double> d = new ArrayList<>();
        for (int i = 0; i < Math.min(per.downtimeMs.size(), batched.downtimeMs.size()); i++) {
            d.add(per.downtimeMs.get(i) - batched.downtimeMs.get(i));
        }
        return MigrationBench.median(d);
    }

    private void printTable(PrintWriter out, Map<String, Sample> samples, String setup, boolean met) {
        out.printf("idle guest of %s on %s; whole migrations over loopback TCP, a warm-up round, then %d interleaved "
                + "runs; medians%n", Sizes.format(memory), setup, runs);
        out.printf("%-24s %-11s %8s %9s %8s %8s %8s %15s %10s%n", "configuration", "load", "sections", "load ms",
                "CPU ms", "commits", "renders", "listener calls", "downtime");
        for (Config c : CONFIGS) {
            for (Incoming.DeviceLoad mode : MODES) {
                Sample s = samples.get(key(c, mode));
                out.printf("%-24s %-11s %8d %9.1f %8.1f %8.0f %8.0f %15.0f %7.0f ms%n", c.name(), mode,
                        s.loads.getFirst().sections(), s.median(l -> l.nanos() / 1e6), s.median(l -> l.cpuNanos() / 1e6),
                        s.median(l -> l.commits()),
                        s.median(l -> l.renders()), s.median(l -> l.listenerCalls()),
                        MigrationBench.median(s.downtimeMs));
            }
            out.printf("%-24s per-device over batched: load %.1fx (CPU %.1fx), listener calls %.1fx; downtime "
                    + "%.0f ms lower batched%n", "", ratio(samples, c, l -> l.nanos()), ratio(samples, c,
                    l -> l.cpuNanos()), ratio(samples, c, l -> l.listenerCalls()), downtimeGain(samples, c));
        }
        out.printf("target: batched load at least %.0fx faster (wall time, as seed 003 measured) on %s, with a lower "
                + "downtime: %s%n", TARGET, CONFIGS.getFirst().name(), met ? "met" : "MISSED");
        out.println("QEMU (seed 003, 8 net x16 + 16 blk x4): 150 ms per device, 30 ms batched (5x); downtime 740+ and "
                + "630+ ms");
    }

    private void printJson(PrintWriter out, Map<String, Sample> samples, String setup, boolean met) throws Exception {
        List<Map<String, Object>> rows = new ArrayList<>();
        for (Config c : CONFIGS) {
            for (Incoming.DeviceLoad mode : MODES) {
                Sample s = samples.get(key(c, mode));
                Map<String, Object> r = new LinkedHashMap<>();
                r.put("configuration", c.name());
                r.put("load", mode.toString());
                r.put("sections", s.loads.getFirst().sections());
                r.put("load-ms", s.median(l -> l.nanos() / 1e6));
                r.put("load-cpu-ms", s.median(l -> l.cpuNanos() / 1e6));
                r.put("commits", s.median(l -> l.commits()));
                r.put("renders", s.median(l -> l.renders()));
                r.put("listener-calls", s.median(l -> l.listenerCalls()));
                r.put("downtime-ms", MigrationBench.median(s.downtimeMs));
                rows.add(r);
            }
        }
        Map<String, Object> o = new LinkedHashMap<>();
        o.put("memory", memory);
        o.put("setup", setup);
        o.put("runs", runs);
        o.put("rows", rows);
        o.put("load-ratio", ratio(samples, CONFIGS.getFirst(), l -> l.nanos()));
        o.put("load-cpu-ratio", ratio(samples, CONFIGS.getFirst(), l -> l.cpuNanos()));
        o.put("downtime-gain-ms", downtimeGain(samples, CONFIGS.getFirst()));
        o.put("target-met", met);
        out.println(new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(o));
    }
}
