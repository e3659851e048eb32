package dev.ferry.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.ferry.api.DirtyTracker;
import dev.ferry.machine.MachineConfig;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import dev.ferry.migration.Incoming;
import dev.ferry.migration.LoopbackMigration;
import dev.ferry.migration.MigrationParameters;
import dev.ferry.migration.MigrationStats;
import dev.ferry.migration.MigrationStatus;
import dev.ferry.migration.bootstrap.Bootstrap;
import dev.ferry.migration.bootstrap.Plan;
import dev.ferry.migration.bootstrap.TrackedMachine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.PrintWriter;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * {@code ferry bench trackers}: seed 004's comparison. The same KVM guest, dirtying random pages
 * as fast as it can, is migrated with each KVM tracker in turn (the runs interleaved, so a host
 * that slows down slows every tracker alike), and the figures are set side by side.
 */
@Command(name = "trackers", mixinStandardHelpOptions = true,
        description = {"Migrate the same KVM guest under heavy random dirtying with kvm-dirtylog (manual protect on "
                + "and off) and with kvm-dirtyring (each ring size), runs interleaved; report total time, downtime, "
                + "pages sent, syncs and the cost of a sync (KVM_GET_DIRTY_LOG and fold, or kick and ring harvest). "
                + "Target (seed 004): the ring no slower than the bitmap. Seed 004's own figures, 4 GiB guest: ring "
                + "73 s, bitmap 55 s."})
final class TrackersBench implements Callable<Integer> {

    @Option(names = "--mem", paramLabel = "SIZE", defaultValue = "256M", converter = MachineOptions.SizeConverter.class,
            description = "Guest RAM. Default: ${DEFAULT-VALUE}.")
    long memory;

    @Option(names = "--vcpus", defaultValue = "2", description = "vCPUs. Default: ${DEFAULT-VALUE}.")
    int vcpus;

    @Option(names = "--rate", paramLabel = "MIBPS", defaultValue = "0",
            description = "Dirty rate of the guest, 0 for as fast as it can. Default: ${DEFAULT-VALUE}.")
    double rate;

    @Option(names = "--ring-sizes", paramLabel = "ENTRIES", split = ",", defaultValue = "4096,65536",
            description = "Dirty ring sizes to compare. Default: ${DEFAULT-VALUE}.")
    List<Integer> ringSizes;

    @Option(names = "--reap-periods", paramLabel = "MS", split = ",", defaultValue = "10",
            description = "Periods of the dirty-ring reaper thread to compare (tracker option reap-period-ms; 0 for "
                    + "no thread). Default: ${DEFAULT-VALUE}.")
    List<Long> reapPeriods;

    @Option(names = "--downtime-limit", paramLabel = "MS", defaultValue = "300",
            description = "Downtime limit. Default: ${DEFAULT-VALUE}.")
    long downtimeLimitMs;

    @Option(names = "--timeout", paramLabel = "S", defaultValue = "300",
            description = "Give up on a migration after S seconds. Default: ${DEFAULT-VALUE}.")
    long timeoutSeconds;

    @Option(names = "--runs", defaultValue = "3", description = "Measured runs of each tracker. Default: ${DEFAULT-VALUE}.")
    int runs;

    @Option(names = "--warmup", defaultValue = "1",
            description = "Runs of each tracker first, shown but left out of the medians (the JIT compiles the "
                    + "sync paths during the first). Default: ${DEFAULT-VALUE}.")
    int warmups;

    @Option(names = "--json", description = "Print the results as JSON.")
    boolean json;

    @picocli.CommandLine.Mixin
    BenchCheck check;

    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    /** One tracker set-up under test. */
    private record Config(String name, String tracker, Map<String, String> options) {
    }

    /** One migration's figures. */
    private record Row(Config config, int run, MigrationStats stats, boolean verified, double syncMeanMs,
                       Map<String, Long> trackerStats) {
    }

    @Override
    public Integer call() throws Exception {
        if (runs < 1 || runs > 20 || warmups < 0 || warmups > 5) {
            throw new IllegalArgumentException("--runs must be 1 to 20 and --warmup 0 to 5");
        }
        if (downtimeLimitMs < 1 || timeoutSeconds < 1) {
            throw new IllegalArgumentException("--downtime-limit and --timeout must be positive");
        }
        List<Config> configs = new ArrayList<>();
        configs.add(new Config("bitmap, manual protect", "kvm-dirtylog", Map.of("manual-protect", "on")));
        configs.add(new Config("bitmap", "kvm-dirtylog", Map.of("manual-protect", "off")));
        for (int size : ringSizes) {
            for (long period : reapPeriods) {
                String name = "ring " + size + (reapPeriods.size() > 1 ? ", reap " + period + " ms" : "");
                configs.add(new Config(name, "kvm-dirtyring", Map.of("dirty-ring-size", Integer.toString(size),
                        "reap-period-ms", Long.toString(period))));
            }
        }
        Bootstrap bootstrap = Bootstrap.create(Ferry.plugins(spec));
        Map<Config, Plan> plans = new LinkedHashMap<>();
        for (Config c : configs) {
            plans.put(c, bootstrap.plan("kvm", c.tracker(), c.options()));
        }
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        if (!json) {
            out.printf("guest %s RAM, %d vCPUs, kvm, random writes %s; downtime-limit %d ms%n", Sizes.format(memory),
                    vcpus, rate == 0 ? "as fast as it can" : rate + " MiB/s", downtimeLimitMs);
            out.printf("%-24s %3s %9s %9s %9s %9s %6s %8s %10s%n", "tracker", "run", "total ms", "downtime",
                    "pages", "MB sent", "syncs", "throttle", "sync ms");
        }
        List<Row> rows = new ArrayList<>();
        // Runs numbered 0 and below are warm-ups.
        for (int run = 1 - warmups; run <= runs; run++) {
            for (Config c : configs) {
                err.printf("ferry bench trackers: %s, run %d...%n", c.name(), run);
                Row r = migrate(bootstrap, plans.get(c), c, run);
                rows.add(r);
                if (!json) {
                    MigrationStats s = r.stats();
                    out.printf("%-24s %3s %9d %9s %9d %9.1f %6d %7d%% %10.3f%n", c.name(),
                            run > 0 ? Integer.toString(run) : "w", s.totalTimeMs(),
                            r.verified() ? s.downtimeMs() + " ms" : s.status().qemuName(),
                            s.normal() + s.duplicate(), s.transferred() / 1e6, s.dirtySyncCount(),
                            s.throttlePercent(), r.syncMeanMs());
                    if (!r.verified()) {
                        out.printf("%-24s %3s %s%n", "", "", s.error());
                    }
                }
            }
        }
        Map<Config, Double> medians = medians(rows, configs);
        double bitmap = best(medians, "kvm-dirtylog");
        double ring = best(medians, "kvm-dirtyring");
        boolean met = rows.stream().allMatch(Row::verified) && ring <= bitmap;
        if (json) {
            List<Map<String, Object>> list = new ArrayList<>();
            for (Row r : rows) {
                MigrationStats s = r.stats();
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("tracker", r.config().name());
                m.put("run", r.run());
                m.put("warm-up", r.run() <= 0);
                m.put("status", s.status().qemuName());
                m.put("verified", r.verified());
                if (!r.verified()) {
                    m.put("error-desc", s.error());
                }
                m.put("total-time-ms", s.totalTimeMs());
                m.put("downtime-ms", s.downtimeMs());
                m.put("pages-sent", s.normal() + s.duplicate());
                m.put("transferred", s.transferred());
                m.put("dirty-sync-count", s.dirtySyncCount());
                m.put("throttle", s.throttlePercent());
                m.put("sync-mean-ms", r.syncMeanMs());
                m.put("tracker-statistics", r.trackerStats());
                list.add(m);
            }
            Map<String, Object> o = new LinkedHashMap<>();
            o.put("runs", list);
            Map<String, Double> byName = new LinkedHashMap<>();
            medians.forEach((c, ms) -> byName.put(c.name(), ms));
            o.put("median-total-ms", byName);
            o.put("target-met", met);
            out.println(new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(o));
        } else {
            out.println("median total time:");
            medians.forEach((c, ms) -> out.printf("  %-22s %9.0f ms%n", c.name(), ms));
            out.printf("target: the ring no slower than the bitmap (median total time, best ring %.0f ms against best "
                    + "bitmap %.0f ms), every migration verified: %s%n", ring, bitmap, met ? "met" : "MISSED");
        }
        return check.exitStatus(met);
    }

    private Row migrate(Bootstrap bootstrap, Plan plan, Config c, int run) throws Exception {
        Workload w = new Workload(Pattern.RANDOM, 0, 0, rate, Workload.PAGE_SIZE, 0.1, 0.9, run);
        MigrationParameters params = MigrationParameters.defaults()
                .withDowntimeLimit(Duration.ofMillis(downtimeLimitMs)).withTimeout(Duration.ofSeconds(timeoutSeconds));
        try (TrackedMachine source = bootstrap.build(plan, MachineConfig.of(memory, vcpus, w))) {
            MigrationBench.fillWithData(source.machine());
            source.machine().start();
            LoopbackMigration.Outcome o = LoopbackMigration.run(source, params,
                    bootstrap.incoming(MigrateCommand.totalMemory(), true, Incoming.DeviceLoad.BATCHED), x -> { });
            o.destination().ifPresent(d -> d.machine().close());
            MigrationStats s = o.stats();
            Map<String, Long> stats = new LinkedHashMap<>();
            for (DirtyTracker t : source.trackers()) {
                stats.putAll(t.statistics());
            }
            // The cost per migration sync: the bitmap tracker times each slot's fetch and fold, the
            // ring tracker each whole kick-and-harvest; either way, divided by the syncs made.
            double syncMs = s.dirtySyncCount() == 0 ? 0 : stats.getOrDefault("sync-ns", 0L) / 1e6 / s.dirtySyncCount();
            boolean verified = s.status() == MigrationStatus.COMPLETED && o.destination().isPresent();
            return new Row(c, run, s, verified, syncMs, stats);
        }
    }

    private static Map<Config, Double> medians(List<Row> rows, List<Config> configs) {
        Map<Config, Double> m = new LinkedHashMap<>();
        for (Config c : configs) {
            m.put(c, MigrationBench.median(rows.stream().filter(r -> r.config().equals(c) && r.run() > 0)
                    .map(r -> (double) r.stats().totalTimeMs()).toList()));
        }
        return m;
    }

    /** @return the lowest median total time among the configurations of {@code tracker} */
    private static double best(Map<Config, Double> medians, String tracker) {
        return medians.entrySet().stream().filter(e -> e.getKey().tracker().equals(tracker))
                .mapToDouble(Map.Entry::getValue).min().orElse(0);
    }
}
