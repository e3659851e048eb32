package dev.ferry.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.ferry.api.Device;
import dev.ferry.machine.Machine;
import dev.ferry.machine.MachineConfig;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.MemfdRamBlock;
import dev.ferry.migration.bootstrap.Bootstrap;
import dev.ferry.migration.bootstrap.Plan;
import dev.ferry.migration.bootstrap.TrackedMachine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.PrintWriter;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;

/**
 * {@code ferry bench vhost}: seed 000's table. An idle guest with vhost-net devices is dirty
 * logged as a migration would, iteration after iteration: sync every listener (the tracker and
 * every vhost dev), move the dirty bits into the migration bitmap, and send the dirty pages
 * (copied into a buffer, as onto a fast socket). What the sync costs per iteration, and its share
 * of an iteration, is compared between every vhost dev scanning guest memory (QEMU before the
 * seed) and one elected logger per backend type (after), for one device with 1, 8 and 48 queue
 * pairs and two devices with 1 and 8 each. QEMU's profile: 1 queue 6.89%, 8 queues 40.5%, 48 queues
 * 78.11%, 2 devices of 1 queue 18.6% before; 48 queues 8.71% and 2 devices of 8 queues 7.97% after.
 */
@Command(name = "vhost", mixinStandardHelpOptions = true,
        description = {"Seed 000: the cost of a dirty-log sync with many vhost devs, every dev scanning guest memory "
                + "against one elected logger per backend type, side by side (1, 8 and 48 queue pairs; 2 devices of "
                + "1 and 8). Target: elected, 48 queue pairs cost at most 1.05x of 1 queue pair."})
final class VhostBench implements Callable<Integer> {

    /** The target: with the elected logger, 48 queue pairs' sync within this factor of 1 queue pair's. */
    static final double TARGET = 1.05;

    @Option(names = "--mem", paramLabel = "SIZE", defaultValue = "4G", converter = MachineOptions.SizeConverter.class,
            description = "Guest RAM (not preallocated: an idle guest touches none). Default: ${DEFAULT-VALUE}.")
    long memory;

    @Option(names = "--seconds", defaultValue = "1",
            description = "Seconds of back-to-back iterations per configuration, mode and run. Default: ${DEFAULT-VALUE}.")
    double seconds;

    @Option(names = "--runs", defaultValue = "5",
            description = "Interleaved runs of every configuration and mode. Default: ${DEFAULT-VALUE}.")
    int runs;

    @Option(names = "--rate", paramLabel = "MIBPS", defaultValue = "10",
            description = "MiB/s each device's backend writes into guest RAM. Default: ${DEFAULT-VALUE}.")
    double rate;

    @Option(names = "--json", description = "Print the results as JSON.")
    boolean json;

    @picocli.CommandLine.Mixin
    BenchCheck check;

    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    /** A device set-up of seed 000's table. */
    record Config(String name, int devices, int queuePairs) {
        String spec(double rate, String scan) {
            return "vhost-net:queues=" + queuePairs + ",count=" + devices + ",rate=" + rate + ",log-scan=" + scan;
        }
    }

    static final List<Config> CONFIGS = List.of(new Config("1 device, 1 queue pair", 1, 1),
            new Config("1 device, 8 queue pairs", 1, 8), new Config("1 device, 48 queue pairs", 1, 48),
            new Config("2 devices, 1 queue pair each", 2, 1), new Config("2 devices, 8 queue pairs each", 2, 8));
    static final List<String> MODES = List.of("every-dev", "elected");

    /** Iterations of one configuration and mode, over all runs. */
    static final class Sample {
        final List<Double> syncUs = new ArrayList<>();
        final List<Double> iterationUs = new ArrayList<>();
        /** Each run's median sync: ratios are taken run by run, between configurations measured side by side. */
        final List<Double> runSyncUs = new ArrayList<>();
        long scans;
        long dmaBytes;

        double share() {
            double s = syncUs.stream().mapToDouble(d -> d).sum();
            double i = iterationUs.stream().mapToDouble(d -> d).sum();
            return i == 0 ? 0 : s / i;
        }
    }

    @Override
    public Integer call() throws Exception {
        if (!(seconds > 0) || seconds > 600 || runs < 1 || runs > 20 || !(rate >= 0) || rate > 10_000) {
            throw new IllegalArgumentException("--seconds must be more than 0 and at most 600, --runs 1 to 20, "
                    + "--rate 0 to 10000");
        }
        Bootstrap bootstrap = Bootstrap.create(Ferry.plugins(spec));
        // No tracker: the guest is idle, so its vCPUs dirty nothing, and the sync is the vhost devs'
        // alone (what seed 000's profile timed: vhost_dev_sync_region).
        Plan plan = new Plan(bootstrap.acceleratorProviders().get("soft"), List.of(), Map.of(), Map.of());
        Workload idle = new Workload(Pattern.IDLE, 0, 0, 0, Workload.PAGE_SIZE, 0.1, 0.9, 1);
        Map<String, Sample> samples = new LinkedHashMap<>();
        PrintWriter err = spec.commandLine().getErr();
        // Run 0 warms up (the JIT compiles the sync path) and is not counted.
        for (int run = 0; run <= runs; run++) {
            for (Config c : CONFIGS) {
                for (String mode : MODES) {
                    err.printf("ferry bench vhost: %s, %s, %s%n", run == 0 ? "warm-up" : "run " + run + "/" + runs,
                            c.name(), mode);
                    Sample s = run == 0 ? new Sample() : samples.computeIfAbsent(c.name() + "/" + mode, k -> new Sample());
                    try (TrackedMachine t = bootstrap.build(plan, MachineConfig.of(memory, 1, idle).withPreallocate(false),
                            bootstrap.devices(List.of(c.spec(rate, mode))))) {
                        measure(t.machine(), s, run == 0 ? 0.3 : seconds);
                    }
                }
            }
        }
        PrintWriter out = spec.commandLine().getOut();
        if (json) {
            printJson(out, samples);
        } else {
            printTable(out, samples);
        }
        return check.exitStatus(median(ratios(samples, "elected")) <= TARGET);
    }

    /** Iterates as the migration does, first for a short warm-up, then for {@code measured} seconds. */
    private void measure(Machine m, Sample s, double measured) {
        MemfdRamBlock ram = m.ram();
        DirtyBitmap bitmap = new DirtyBitmap(ram.pages());
        m.memory().globalDirtyLogStart();
        m.start();
        // CPU time of this thread, as seed 000's figures are shares of a CPU profile: on a small
        // host the backends' threads preempt this one, and wall time would charge that to the sync.
        ThreadMXBean cpu = ManagementFactory.getThreadMXBean();
        int runStart = s.syncUs.size();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment wire = arena.allocate(4096, 4096);
            long scans0 = 0;
            for (int phase = 0; phase < 2; phase++) {
                long end = System.nanoTime() + (long) ((phase == 0 ? 0.2 : measured) * 1e9);
                if (phase == 1) {
                    scans0 = scans(m);
                }
                while (System.nanoTime() < end) {
                    long t0 = cpu.getCurrentThreadCpuTime();
                    m.memory().globalDirtyLogSync(false);
                    long t1 = cpu.getCurrentThreadCpuTime();
                    ram.syncDirtyBitmap(bitmap);
                    for (int w = 0; w < bitmap.wordCount(); w++) {
                        long bits = bitmap.word(w) == 0 ? 0 : bitmap.takeWord(w);
                        while (bits != 0) {
                            long page = ((long) w << 6) + Long.numberOfTrailingZeros(bits);
                            MemorySegment.copy(ram.host(), page * 4096, wire, 0, 4096);
                            bits &= bits - 1;
                        }
                    }
                    long t2 = cpu.getCurrentThreadCpuTime();
                    if (phase == 1) {
                        s.syncUs.add((t1 - t0) / 1e3);
                        s.iterationUs.add((t2 - t0) / 1e3);
                    }
                }
            }
            s.scans += scans(m) - scans0;
            s.runSyncUs.add(median(s.syncUs.subList(runStart, s.syncUs.size())));
        } finally {
            m.pause();
            m.memory().globalDirtyLogStop();
        }
        for (Device d : m.devices()) {
            s.dmaBytes += d.statistics().getOrDefault("dma-bytes", 0L);
        }
    }

    /** @return per run, the 48-queue-pair configuration's median sync over the 1-queue-pair one's */
    private List<Double> ratios(Map<String, Sample> samples, String mode) {
        List<Double> one = sample(samples, CONFIGS.get(0), mode).runSyncUs;
        List<Double> many = sample(samples, CONFIGS.get(2), mode).runSyncUs;
        List<Double> r = new ArrayList<>();
        for (int i = 0; i < Math.min(one.size(), many.size()); i++) {
            r.add(many.get(i) / one.get(i));
        }
        return r;
    }

    private static long scans(Machine m) {
        return m.devices().stream().mapToLong(d -> d.statistics().getOrDefault("section-scans", 0L)).sum();
    }

    private static double median(List<Double> v) {
        return MigrationBench.median(v);
    }

    private Sample sample(Map<String, Sample> samples, Config c, String mode) {
        return samples.get(c.name() + "/" + mode);
    }

    private void printTable(PrintWriter out, Map<String, Sample> samples) {
        out.printf("idle soft guest of %s, vhost-net backends writing %.0f MiB/s each, back-to-back iterations; "
                + "a warm-up round, then %d interleaved runs of %.1f s; medians per iteration (CPU µs of the migration "
                + "thread)%n", Sizes.format(memory),
                rate, runs, seconds);
        out.printf("%-30s %-10s %6s %10s %11s %12s %8s %14s%n", "configuration", "log-scan", "devs", "iterations",
                "sync µs", "iteration µs", "share", "scans/iteration");
        for (Config c : CONFIGS) {
            for (String mode : MODES) {
                Sample s = sample(samples, c, mode);
                out.printf("%-30s %-10s %6d %10d %11.1f %12.1f %7.2f%% %14.2f%n", c.name(), mode,
                        c.devices() * c.queuePairs(), s.syncUs.size(), median(s.syncUs), median(s.iterationUs),
                        100 * s.share(), s.syncUs.isEmpty() ? 0.0 : (double) s.scans / s.syncUs.size());
            }
        }
        for (String mode : MODES) {
            List<Double> perRun = ratios(samples, mode);
            double ratio = median(perRun);
            double shareOne = sample(samples, CONFIGS.get(0), mode).share();
            double shareMany = sample(samples, CONFIGS.get(2), mode).share();
            out.printf("%-10s 48 queue pairs against 1: sync %.2fx (median of the runs' %s), share %.2fx%s%n", mode,
                    ratio, perRun.stream().map(x -> String.format("%.2f", x)).toList(), shareMany / shareOne,
                    mode.equals("elected") ? String.format(" (target: at most %.2fx: %s)", TARGET,
                            ratio <= TARGET ? "met" : "MISSED") : "");
        }
        out.println("sync: the vhost devs' log sync (no tracker: the idle guest's vCPUs dirty nothing); iteration: sync, "
                + "move the "
                + "bits into the migration bitmap, send the dirty pages. QEMU (seed 000) before: 6.89% at 1 queue, "
                + "78.11% at 48; after: 8.71% at 48 (1.26x)");
    }

    private void printJson(PrintWriter out, Map<String, Sample> samples) throws Exception {
        List<Map<String, Object>> rows = new ArrayList<>();
        for (Config c : CONFIGS) {
            for (String mode : MODES) {
                Sample s = sample(samples, c, mode);
                Map<String, Object> r = new LinkedHashMap<>();
                r.put("configuration", c.name());
                r.put("devices", c.devices());
                r.put("queue-pairs", c.queuePairs());
                r.put("log-scan", mode);
                r.put("iterations", s.syncUs.size());
                r.put("sync-us", median(s.syncUs));
                r.put("iteration-us", median(s.iterationUs));
                r.put("sync-share", s.share());
                r.put("section-scans", s.scans);
                r.put("dma-bytes", s.dmaBytes);
                rows.add(r);
            }
        }
        double ratio = median(ratios(samples, "elected"));
        Map<String, Object> o = new LinkedHashMap<>();
        o.put("memory", memory);
        o.put("rate", rate);
        o.put("runs", runs);
        o.put("rows", rows);
        o.put("elected-48-vs-1", ratio);
        o.put("every-dev-48-vs-1", median(ratios(samples, "every-dev")));
        o.put("target-met", ratio <= TARGET);
        out.println(new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(o));
    }
}
