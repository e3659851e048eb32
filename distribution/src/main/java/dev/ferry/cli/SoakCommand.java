package dev.ferry.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.ferry.machine.AcceleratorProvider;
import dev.ferry.migration.bootstrap.Bootstrap;
import dev.ferry.migration.bootstrap.PluginInfo;
import dev.ferry.migration.bootstrap.UsageException;
import dev.ferry.migration.soak.Soak;
import dev.ferry.migration.soak.SoakConfig;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.Callable;

/** {@code ferry soak}: randomized migrations with faults, each checked, until a count or a time. */
@Command(name = "soak", mixinStandardHelpOptions = true,
        description = {"Run randomized migrations, each drawn from a seed: accelerator, trackers and their "
                + "combinations, workload, vCPUs, guest size, dirty rate, bandwidth limit, transport (in-process, tcp, "
                + "unix, file then incoming), and in half the runs a fault (connection cut, destination killed, "
                + "cancel, timeout) at a random moment. Every run is checked: a completed one must be verified and "
                + "its guest carry on at the destination; a failed one must leave the source guest running with "
                + "nothing lost. Prints a table of runs by transport and fault, and the seed that replays any "
                + "finding. Exit status 1 if any run lost pages, broke an image or hung."})
final class SoakCommand implements Callable<Integer> {

    @Option(names = "--runs", paramLabel = "N", defaultValue = "100",
            description = "Stop after this many runs. Default: ${DEFAULT-VALUE}.")
    int runs;

    @Option(names = "--minutes", paramLabel = "M", defaultValue = "0",
            description = "Stop after this many minutes instead (0: no time limit). Default: ${DEFAULT-VALUE}.")
    double minutes;

    @Option(names = "--seed", paramLabel = "S", defaultValue = "1",
            description = "Seed of the first run; run i uses S+i. Replay one run with --seed ITS_SEED --runs 1. "
                    + "Default: ${DEFAULT-VALUE}.")
    long seed;

    @Option(names = "--accel", paramLabel = "LIST", defaultValue = "auto",
            description = "Accelerators to draw from, comma-separated, or auto (those usable here that --accel auto "
                    + "would consider). Default: ${DEFAULT-VALUE}.")
    String accel;

    @Option(names = "--json", description = "Print every run and the totals as JSON.")
    boolean json;

    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Override
    public Integer call() throws Exception {
        if (runs < 1 || !(minutes >= 0)) {
            throw new IllegalArgumentException("--runs must be at least 1 and --minutes not negative, got " + runs
                    + " and " + minutes);
        }
        Bootstrap bootstrap = Bootstrap.create(Ferry.plugins(spec));
        List<SoakConfig.Choice> choices = choices(bootstrap);
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        Path scratch = Files.createTempDirectory("ferry-soak");
        List<Soak.RunResult> results = new ArrayList<>();
        try {
            Soak soak = new Soak(bootstrap, scratch);
            long deadline = minutes == 0 ? Long.MAX_VALUE : System.nanoTime() + (long) (minutes * 60e9);
            int limit = minutes == 0 ? runs : Integer.MAX_VALUE;
            for (int i = 0; i < limit && System.nanoTime() < deadline; i++) {
                SoakConfig c = SoakConfig.draw(seed + i, choices);
                Soak.RunResult r = soak.run(c);
                results.add(r);
                err.printf("ferry soak: run %d, seed %d: %s: %s (%d ms)%s%n", i + 1, c.seed(), c.describe(),
                        r.outcome().word(), r.millis(), r.detail().isEmpty() ? "" : ": " + r.detail());
                if (r.outcome() == Soak.Outcome.HANG) {
                    err.println("ferry soak: stopping after a hang; its threads are left behind");
                    break;
                }
            }
        } finally {
            try (var files = Files.list(scratch)) {
                for (Path p : files.toList()) {
                    Files.deleteIfExists(p);
                }
            }
            Files.deleteIfExists(scratch);
        }
        List<Soak.RunResult> findings = results.stream().filter(r -> r.outcome().isFinding()).toList();
        if (json) {
            printJson(out, results);
        } else {
            printTable(out, results, findings);
        }
        return findings.isEmpty() ? 0 : Ferry.FAILURE;
    }

    /**
     * Every usable accelerator (or those named), each with its available trackers alone and in
     * every pair the bootstrap accepts on it.
     */
    private List<SoakConfig.Choice> choices(Bootstrap bootstrap) {
        Map<String, AcceleratorProvider> all = bootstrap.acceleratorProviders();
        List<String> names = new ArrayList<>();
        if (accel.equals("auto")) {
            bootstrap.accelerators().forEach((name, a) -> {
                if (a.available() && all.get(name).autoPriority() >= 0) {
                    names.add(name);
                }
            });
        } else {
            for (String n : accel.split(",")) {
                if (!all.containsKey(n.trim())) {
                    throw new IllegalArgumentException("--accel: unknown accelerator '" + n.trim() + "'; known: "
                            + String.join(", ", all.keySet()));
                }
                names.add(n.trim());
            }
        }
        List<String> trackers = bootstrap.trackers().stream().filter(PluginInfo::available).map(PluginInfo::name)
                .toList();
        List<SoakConfig.Choice> out = new ArrayList<>();
        for (String a : names) {
            List<String> lists = new ArrayList<>();
            for (int i = 0; i < trackers.size(); i++) {
                for (int j = i; j < trackers.size(); j++) {
                    String list = i == j ? trackers.get(i) : trackers.get(i) + "," + trackers.get(j);
                    try {
                        bootstrap.plan(a, list, Map.of());
                        lists.add(list);
                    } catch (UsageException notOnThisAccelerator) {
                        // Not a combination this accelerator runs.
                    }
                }
            }
            if (lists.isEmpty()) {
                throw new IllegalArgumentException("--accel " + a + ": no available tracker runs on it here");
            }
            out.add(new SoakConfig.Choice(a, lists));
        }
        if (out.isEmpty()) {
            throw new IllegalArgumentException("--accel " + accel + ": no usable accelerator to soak");
        }
        return out;
    }

    private static void printTable(PrintWriter out, List<Soak.RunResult> results, List<Soak.RunResult> findings) {
        Map<String, Map<Soak.Outcome, Integer>> rows = new TreeMap<>();
        Map<String, List<Long>> times = new TreeMap<>();
        for (Soak.RunResult r : results) {
            String key = r.config().transport().word() + " / " + r.config().fault().word();
            rows.computeIfAbsent(key, k -> new EnumMap<>(Soak.Outcome.class)).merge(r.outcome(), 1, Integer::sum);
            times.computeIfAbsent(key, k -> new ArrayList<>()).add(r.millis());
        }
        out.printf("%-28s %5s", "transport / fault", "runs");
        for (Soak.Outcome o : Soak.Outcome.values()) {
            out.printf(" %16s", o.word());
        }
        out.printf(" %10s%n", "median ms");
        Map<Soak.Outcome, Integer> total = new EnumMap<>(Soak.Outcome.class);
        rows.forEach((key, counts) -> {
            out.printf("%-28s %5d", key, counts.values().stream().mapToInt(Integer::intValue).sum());
            for (Soak.Outcome o : Soak.Outcome.values()) {
                int n = counts.getOrDefault(o, 0);
                total.merge(o, n, Integer::sum);
                out.printf(" %16d", n);
            }
            List<Long> t = times.get(key).stream().sorted().toList();
            out.printf(" %10d%n", t.get(t.size() / 2));
        });
        out.printf("%-28s %5d", "all", results.size());
        for (Soak.Outcome o : Soak.Outcome.values()) {
            out.printf(" %16d", total.getOrDefault(o, 0));
        }
        out.println();
        if (findings.isEmpty()) {
            out.printf("no finding: every completed run verified and carried on at the destination, every failed run "
                    + "left the source guest running with nothing lost%n");
        }
        for (Soak.RunResult f : findings) {
            out.printf("%s, seed %d: %s: %s%n  replay: ferry soak --seed %d --runs 1%n", f.outcome().word(),
                    f.config().seed(), f.config().describe(), f.detail(), f.config().seed());
        }
    }

    private static void printJson(PrintWriter out, List<Soak.RunResult> results) throws Exception {
        List<Map<String, Object>> rows = new ArrayList<>();
        Map<String, Integer> totals = new LinkedHashMap<>();
        for (Soak.RunResult r : results) {
            Map<String, Object> m = new LinkedHashMap<>();
            SoakConfig c = r.config();
            m.put("seed", c.seed());
            m.put("accelerator", c.accelerator());
            m.put("trackers", c.trackers());
            m.put("workload", c.pattern().name().toLowerCase(java.util.Locale.ROOT));
            m.put("vcpus", c.vcpus());
            m.put("memory-mib", c.memoryMiB());
            m.put("rate-mibps", c.rateMiBps());
            m.put("max-bandwidth", c.maxBandwidth());
            m.put("transport", c.transport().word());
            m.put("fault", c.fault().word());
            m.put("fault-at-ms", c.faultAtMillis());
            m.put("outcome", r.outcome().word());
            m.put("detail", r.detail());
            m.put("ms", r.millis());
            rows.add(m);
            totals.merge(r.outcome().word(), 1, Integer::sum);
        }
        Map<String, Object> o = new LinkedHashMap<>();
        o.put("runs", rows);
        o.put("totals", totals);
        out.println(new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(o));
    }
}
