package dev.ferry.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.ferry.api.DirtyTracker;
import dev.ferry.machine.Machine;
import dev.ferry.machine.MachineConfig;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.MemfdRamBlock;
import dev.ferry.migration.bootstrap.Bootstrap;
import dev.ferry.migration.bootstrap.TrackedMachine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.PrintWriter;
import java.lang.management.CompilationMXBean;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.function.ToLongFunction;
import java.util.regex.Matcher;

/**
 * {@code ferry bench sync-cost}: what one dirty-log sync costs Ferry's KVM trackers when the
 * guest has written every page, beside the C reference probe ({@code kvmbench} from
 * {@code shared/tools/kvm-in-tcg/probes}) run on the same guest size in the same boot.
 *
 * <p>Each pass lets a sequential guest write every page of its working set once, stops the vCPU
 * (as the probe's guest stops itself), and times what the migration does at a sync: the
 * trackers' log sync through the memory system (KVM_GET_DIRTY_LOG and the fold into the RAM
 * block's bitmap, or the kick and ring reap), moving the migration's bits out (the probe's scan
 * into a page list), and, with manual protect, KVM_CLEAR_DIRTY_LOG. For the ring, the reaps made
 * while the guest ran (ring-full exits, pacing exits, the reaper thread) count too, as the
 * probe counts its reaps at chunk exits. Pass 0, which takes the first-touch faults, is left out
 * on both sides; figures are medians of the passes after it. Before pass 0, Ferry syncs back to
 * back for a few seconds on the running guest, so the sync path is compiled as in a migration
 * past its first iterations. The rings run without the reaper thread ({@code reap-period-ms=0}):
 * the vCPU thread reaps when its ring is three quarters full and the sync reaps the rest, as the
 * probe's one thread reaps at its chunk exits and at the end of the pass.
 */
@Command(name = "sync-cost", mixinStandardHelpOptions = true,
        description = {"Time one dirty-log sync of the KVM trackers (kvm-dirtylog with manual protect off and on, "
                + "kvm-dirtyring per ring size) after the guest wrote every page, beside the C probe kvmbench on the "
                + "same guest size in the same boot. Target: Ferry at most 1.2x the C cost per dirty page."})
final class SyncCostBench implements Callable<Integer> {

    /** Target of issue 9: Ferry's sync at most this many times the C probe's. */
    static final double TARGET_RATIO = 1.2;

    @Option(names = "--mem", paramLabel = "SIZE", defaultValue = "64M", converter = MachineOptions.SizeConverter.class,
            description = "Guest RAM. Default: ${DEFAULT-VALUE}.")
    long memory;

    @Option(names = "--passes", defaultValue = "10",
            description = "Measured passes of each mode (one more runs first and is left out). Default: ${DEFAULT-VALUE}.")
    int passes;

    @Option(names = "--warmup", paramLabel = "SECONDS", defaultValue = "5",
            description = "Seconds of back-to-back syncs on the running guest before measuring, so that the JIT has "
                    + "compiled the sync path as it has in a migration's steady state. Default: ${DEFAULT-VALUE}.")
    int warmupSeconds;

    @Option(names = "--ring-sizes", paramLabel = "ENTRIES", split = ",", defaultValue = "4096,65536",
            description = "Dirty ring sizes. Default: ${DEFAULT-VALUE}.")
    List<Integer> ringSizes;

    @Option(names = "--c-probe", paramLabel = "PATH",
            description = "The C probe kvmbench (shared/tools/kvm-in-tcg/probes/kvmbench.c, built with gcc -O2 -static) "
                    + "to run beside each mode. Without it only Ferry's figures are printed.")
    Path cProbe;

    @Option(names = {"-v", "--verbose"}, description = "Print each pass's figures on standard error.")
    boolean verbose;

    @Option(names = "--json", description = "Print the results as JSON.")
    boolean json;

    @picocli.CommandLine.Mixin
    BenchCheck check;

    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    /** A tracker set-up, and the probe mode that does the same thing in C. */
    private record Mode(String name, String probeMode, String tracker, Map<String, String> options, int ringEntries) {
    }

    /**
     * One side's median figures for a mode, in microseconds.
     *
     * @param fetchUs   Java: the trackers' log sync; C: KVM_GET_DIRTY_LOG, or KVM_RESET_DIRTY_RINGS for the ring
     * @param scanUs    Java: moving the migration's bits out; C: bitmap to page list, or the ring harvest
     * @param clearUs   KVM_CLEAR_DIRTY_LOG (manual protect only)
     * @param duringRunUs Java ring only: reaps made while the guest ran
     * @param totalUs   the whole cost of the pass's sync
     * @param kernelUs  of the total, the time in KVM's ioctls (GET_DIRTY_LOG, CLEAR_DIRTY_LOG, RESET_DIRTY_RINGS)
     * @param pages     dirty pages reported per pass
     */
    record Figures(double fetchUs, double scanUs, double clearUs, double duringRunUs, double totalUs, double kernelUs,
                   double pages) {

        double nanosPerPage() {
            return pages == 0 ? 0 : totalUs * 1000 / pages;
        }
    }

    /** One mode's outcome. */
    private record Result(Mode mode, Figures java, Optional<Figures> c, String cError, long lostPages) {

        Optional<Double> ratio() {
            return c.filter(f -> f.nanosPerPage() > 0).map(f -> java.nanosPerPage() / f.nanosPerPage());
        }
    }

    @Override
    public Integer call() throws Exception {
        if (passes < 1 || passes > 100 || warmupSeconds < 0 || warmupSeconds > 600) {
            throw new IllegalArgumentException("--passes must be 1 to 100 and --warmup 0 to 600 seconds");
        }
        if (cProbe != null && !Files.isExecutable(cProbe)) {
            throw new IllegalArgumentException("--c-probe " + cProbe + " is not an executable file; build it with "
                    + "gcc -O2 -static -o kvmbench kvmbench.c in shared/tools/kvm-in-tcg/probes");
        }
        List<Mode> modes = new ArrayList<>();
        modes.add(new Mode("bitmap", "bitmap", "kvm-dirtylog", Map.of("manual-protect", "off"), 0));
        modes.add(new Mode("bitmap, manual protect", "manual", "kvm-dirtylog", Map.of("manual-protect", "on"), 0));
        for (int size : ringSizes) {
            // No reaper thread: the vCPU thread and the syncs reap, as the probe's single thread does.
            modes.add(new Mode("ring " + size, "ring", "kvm-dirtyring",
                    Map.of("dirty-ring-size", Integer.toString(size), "reap-period-ms", "0"), size));
        }
        Bootstrap bootstrap = Bootstrap.create(Ferry.plugins(spec));
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        List<Result> results = new ArrayList<>();
        for (Mode m : modes) {
            err.printf("ferry bench sync-cost: %s...%n", m.name());
            Optional<Figures> c = Optional.empty();
            String cError = null;
            if (cProbe != null) {
                try {
                    c = Optional.of(runProbe(m));
                } catch (IOException e) {
                    cError = e.getMessage();
                }
            }
            JavaRun run = measure(bootstrap, m);
            results.add(new Result(m, run.figures(), c, cError, run.lostPages()));
        }
        boolean lost = results.stream().anyMatch(r -> r.lostPages() > 0);
        if (json) {
            printJson(out, results);
        } else {
            printTable(out, results);
        }
        if (lost) {
            err.println("ferry bench sync-cost: a tracker failed to report pages the guest wrote (see LOST above)");
            return 1;
        }
        // Without --c-probe there is no C figure to compare with, so no target to miss.
        return check.exitStatus(results.stream().allMatch(r -> r.ratio().map(x -> x <= TARGET_RATIO).orElse(true)));
    }

    private record JavaRun(Figures figures, long lostPages) {
    }

    private record Pass(long fetchNs, long scanNs, long clearNs, long duringRunNs, long kernelNs, long pages) {

        long totalNs() {
            return fetchNs + scanNs + clearNs + duringRunNs;
        }
    }

    /** Runs {@code passes + 1} passes of Ferry's sync on a fresh guest with the mode's tracker. */
    private JavaRun measure(Bootstrap bootstrap, Mode mode) throws Exception {
        // 8-byte writes: the cost measured here depends on which pages are dirty, not on how much of each.
        Workload w = new Workload(Pattern.SEQUENTIAL, 0, 0, 0, 8, 0.1, 0.9, 1);
        try (TrackedMachine tracked = bootstrap.build(bootstrap.plan("kvm", mode.tracker(), mode.options()),
                MachineConfig.of(memory, 1, w))) {
            Machine machine = tracked.machine();
            MachineConfig config = machine.config();
            long firstPage = config.workload().workingSetOffset() / Workload.PAGE_SIZE;
            long wsPages = config.workload().workingSetSize(config.ramSize()) / Workload.PAGE_SIZE;
            List<MemfdRamBlock> blocks = machine.memory().ramBlocks();
            List<DirtyBitmap> scratch = blocks.stream().map(b -> new DirtyBitmap(b.pages())).toList();
            int ramIndex = blocks.indexOf(machine.ram());
            machine.memory().globalDirtyLogStart();
            machine.start();
            List<Pass> measured = new ArrayList<>();
            long lost = 0;
            try {
                warmUp(machine, blocks, scratch);
                for (int p = 0; p <= passes; p++) {
                    long runReapNs = statistic(tracked, "reap-ns");
                    long kernelNs = kernelNanos(tracked);
                    runUntilWritten(machine, wsPages);
                    long duringRun = statistic(tracked, "reap-ns") - runReapNs;
                    awaitQuietJit();
                    Sync sync = syncDrainClear(machine, blocks, scratch);
                    // Every page of the working set was written since the last sync: all must be reported.
                    lost += wsPages - scratch.get(ramIndex).count(firstPage, wsPages);
                    scratch.forEach(DirtyBitmap::clearAll);
                    Pass pass = new Pass(sync.fetchNs(), sync.scanNs(), sync.clearNs(), duringRun,
                            kernelNanos(tracked) - kernelNs, sync.pages());
                    if (p > 0) {
                        measured.add(pass);
                    }
                    if (verbose) {
                        spec.commandLine().getErr().printf("  %s pass %d: %s%n", mode.name(), p, pass);
                    }
                }
            } finally {
                machine.pause();
                machine.memory().globalDirtyLogStop();
            }
            return new JavaRun(new Figures(medianUs(measured, Pass::fetchNs), medianUs(measured, Pass::scanNs),
                    medianUs(measured, Pass::clearNs), medianUs(measured, Pass::duringRunNs),
                    medianUs(measured, Pass::totalNs), medianUs(measured, Pass::kernelNs),
                    MigrationBench.median(measured, Pass::pages)), lost);
        }
    }

    /** Syncs, drains and clears back to back while the guest runs, for {@link #warmupSeconds}. */
    private void warmUp(Machine machine, List<MemfdRamBlock> blocks, List<DirtyBitmap> scratch) {
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(warmupSeconds);
        machine.resume();
        while (System.nanoTime() < end) {
            syncDrainClear(machine, blocks, scratch);
            scratch.forEach(DirtyBitmap::clearAll);
            checkVcpus(machine);
        }
        machine.pause();
    }

    /** One sync's phases, timed, and the pages it reported. */
    private record Sync(long fetchNs, long scanNs, long clearNs, long pages) {
    }

    /**
     * What a migration does at a sync: the trackers report, the migration's bits move out of the
     * blocks into {@code scratch}, and each block's log is cleared.
     */
    private static Sync syncDrainClear(Machine machine, List<MemfdRamBlock> blocks, List<DirtyBitmap> scratch) {
        long t0 = System.nanoTime();
        machine.memory().globalDirtyLogSync(false);
        long t1 = System.nanoTime();
        long pages = 0;
        for (int i = 0; i < blocks.size(); i++) {
            pages += blocks.get(i).syncDirtyBitmap(scratch.get(i));
        }
        long t2 = System.nanoTime();
        for (MemfdRamBlock b : blocks) {
            machine.systemMemory().logClear(b, 0, b.size());
        }
        long t3 = System.nanoTime();
        return new Sync(t1 - t0, t2 - t1, t3 - t2, pages);
    }

    private static void checkVcpus(Machine machine) {
        machine.vcpuFailure().ifPresent(e -> {
            throw new IllegalStateException("the vCPU stopped: " + e.getMessage(), e);
        });
    }

    /** Lets the vCPU write {@code pages} more pages (sequentially: each page once), then stops it. */
    private static void runUntilWritten(Machine machine, long pages) {
        long target = machine.pagesWritten() + pages;
        long deadline = System.nanoTime() + TimeUnit.MINUTES.toNanos(5);
        machine.resume();
        while (machine.pagesWritten() < target) {
            checkVcpus(machine);
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("the guest wrote " + (pages - target + machine.pagesWritten())
                        + " of " + pages + " pages in 5 minutes; it is not running");
            }
            LockSupport.parkNanos(2_000_000L); // seldom: a busy poller slows an emulated guest
        }
        machine.pause();
    }

    /**
     * Waits (up to 10 s) until the JIT has compiled nothing for 300 ms. Under emulation a compiler
     * thread busy on the other CPU halves this one's speed (the emulator runs the CPUs in turn:
     * the probe's KVM_GET_DIRTY_LOG takes 2.5 times as long beside a busy loop), which would be
     * charged to the sync.
     */
    private static void awaitQuietJit() {
        CompilationMXBean jit = ManagementFactory.getCompilationMXBean();
        if (jit == null || !jit.isCompilationTimeMonitoringSupported()) {
            return;
        }
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        long last = jit.getTotalCompilationTime();
        long quietSince = System.nanoTime();
        while (System.nanoTime() - quietSince < TimeUnit.MILLISECONDS.toNanos(300) && System.nanoTime() < deadline) {
            LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(20));
            long now = jit.getTotalCompilationTime();
            if (now != last) {
                last = now;
                quietSince = System.nanoTime();
            }
        }
    }

    /** @return nanoseconds the trackers spent in KVM's dirty-log ioctls so far */
    private static long kernelNanos(TrackedMachine tracked) {
        return statistic(tracked, "get-dirty-log-ns") + statistic(tracked, "clear-dirty-log-ns")
                + statistic(tracked, "reset-dirty-rings-ns");
    }

    private static long statistic(TrackedMachine tracked, String name) {
        long sum = 0;
        for (DirtyTracker t : tracked.trackers()) {
            sum += t.statistics().getOrDefault(name, 0L);
        }
        return sum;
    }

    private static double medianUs(List<Pass> passes, ToLongFunction<Pass> f) {
        return MigrationBench.median(passes, f) / 1e3;
    }

    /** The probe's summary line: {@code C <mode> mem=..: median io(..)=Xus scan(..)=Xus clear=Xus total=Xus ...}. */
    private static final java.util.regex.Pattern PROBE_SUMMARY = java.util.regex.Pattern.compile(
            "^C \\S+ mem=\\d+MiB pages=(\\d+) passes=\\d+: median \\S+=([\\d.]+)us \\S+=([\\d.]+)us "
                    + "clear=([\\d.]+)us total=([\\d.]+)us", java.util.regex.Pattern.MULTILINE);

    /**
     * Runs the C probe in the mode's configuration: memfd RAM as Ferry's, the same passes, and for
     * a ring smaller than the guest, a guest exit (and reap) every half ring, as the probe does.
     */
    private Figures runProbe(Mode mode) throws IOException, InterruptedException {
        long mib = memory >> 20;
        long pages = memory / Workload.PAGE_SIZE;
        List<String> cmd = new ArrayList<>(List.of(cProbe.toString(), mode.probeMode(), Long.toString(mib),
                Integer.toString(passes + 1), Integer.toString(Math.max(mode.ringEntries(), 4096)), "1"));
        if (mode.ringEntries() >= pages) {
            cmd.add("0"); // the ring holds every page: no chunk exits
        }
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String output = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!p.waitFor(10, TimeUnit.MINUTES) || p.exitValue() != 0) {
            String last = output.strip().lines().reduce((a, b) -> b).orElse("no output");
            throw new IOException("C probe " + String.join(" ", cmd) + " failed: " + last);
        }
        return parseProbe(output, mode.probeMode().equals("manual"));
    }

    /**
     * Reads the probe's output.
     *
     * @param manual whether the probe ran in manual-protect mode (its clear is then KVM_CLEAR_DIRTY_LOG)
     * @throws IOException if the probe lost pages or printed no summary
     */
    static Figures parseProbe(String output, boolean manual) throws IOException {
        if (output.contains("WARNING")) {
            throw new IOException("C probe lost pages: " + output.lines().filter(l -> l.contains("WARNING"))
                    .findFirst().orElse(""));
        }
        Matcher m = PROBE_SUMMARY.matcher(output);
        if (!m.find()) {
            throw new IOException("C probe printed no summary line: " + output.strip());
        }
        double io = Double.parseDouble(m.group(2));
        double scan = Double.parseDouble(m.group(3));
        double clear = Double.parseDouble(m.group(4));
        double total = Double.parseDouble(m.group(5));
        // The probe's io column is KVM_GET_DIRTY_LOG, or KVM_RESET_DIRTY_RINGS for the ring.
        double kernel = io + (manual ? clear : 0);
        return new Figures(io, scan, clear, 0, total, kernel, Long.parseLong(m.group(1)));
    }

    private void printTable(PrintWriter out, List<Result> results) {
        out.printf("guest %s RAM, kvm, 1 vCPU writing every page between syncs; %d s of syncs to warm up, then "
                + "medians of %d passes (µs); rings without the reaper thread, as the probe%n", Sizes.format(memory),
                warmupSeconds, passes);
        out.printf("%-24s %-5s %7s %10s %10s %10s %10s %10s %10s %10s %8s%n", "mode", "side", "pages", "fetch",
                "scan", "clear", "while run", "total", "in KVM", "own", "ns/page");
        for (Result r : results) {
            row(out, r.mode().name(), "Ferry", r.java());
            r.c().ifPresent(c -> row(out, "", "C", c));
            if (r.cError() != null) {
                out.printf("%-24s %-5s %s%n", "", "C", r.cError());
            }
            r.ratio().ifPresent(x -> out.printf("%-24s Ferry/C per page %.2fx: %s%n", "", x,
                    x <= TARGET_RATIO ? "met" : "MISSED"));
            if (r.lostPages() > 0) {
                out.printf("%-24s LOST %d written pages not reported%n", "", r.lostPages());
            }
        }
        out.println("fetch: Ferry's log sync (KVM_GET_DIRTY_LOG and fold, or kick and final reap); C's "
                + "KVM_GET_DIRTY_LOG or KVM_RESET_DIRTY_RINGS. scan: Ferry moving the migration's bits out; C's "
                + "bitmap walk or ring harvest. in KVM: the dirty-log ioctls' share of the total; own: the rest. "
                + "target: Ferry at most " + TARGET_RATIO + "x C per dirty page");
    }

    private static void row(PrintWriter out, String name, String side, Figures f) {
        out.printf("%-24s %-5s %7.0f %10.1f %10.1f %10.1f %10.1f %10.1f %10.1f %10.1f %8.1f%n", name, side, f.pages(),
                f.fetchUs(), f.scanUs(), f.clearUs(), f.duringRunUs(), f.totalUs(), f.kernelUs(),
                f.totalUs() - f.kernelUs(), f.nanosPerPage());
    }

    private void printJson(PrintWriter out, List<Result> results) throws IOException {
        List<Map<String, Object>> list = new ArrayList<>();
        for (Result r : results) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("mode", r.mode().name());
            m.put("ferry", r.java());
            r.c().ifPresent(c -> m.put("c", c));
            if (r.cError() != null) {
                m.put("c-error", r.cError());
            }
            r.ratio().ifPresent(x -> {
                m.put("ratio-per-page", x);
                m.put("target-met", x <= TARGET_RATIO);
            });
            m.put("lost-pages", r.lostPages());
            list.add(m);
        }
        Map<String, Object> o = new LinkedHashMap<>();
        o.put("memory", memory);
        o.put("passes", passes);
        o.put("modes", list);
        out.println(new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(o));
    }
}
