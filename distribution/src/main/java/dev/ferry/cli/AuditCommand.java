package dev.ferry.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.ferry.audit.AuditTotals;
import dev.ferry.audit.SyncReport;
import dev.ferry.audit.TrackerAudit;
import dev.ferry.machine.Machine;
import dev.ferry.migration.bootstrap.Bootstrap;
import dev.ferry.migration.bootstrap.Plan;
import dev.ferry.migration.bootstrap.TrackedMachine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.locks.LockSupport;

/**
 * {@code ferry audit}: trackers side by side on one guest, checked against a copy of its RAM.
 * Each sync is taken with the guest paused, so every tracker answers for the same writes.
 */
@Command(name = "audit", mixinStandardHelpOptions = true,
        description = {"Run a guest with several trackers at once and compare them sync by sync: the pages each "
                + "reported that the others missed, and the pages the guest wrote that none reported (which "
                + "a migration would lose; there must be none). The guest is paused for each sync and RAM is "
                + "compared with a copy, so --mem defaults to 256M here.",
                "Exit status 1 if any written page went unreported."})
final class AuditCommand implements Callable<Integer> {

    /** The guest size when --mem is not given: the audit keeps a copy of RAM and compares it on every sync. */
    static final long DEFAULT_MEMORY = 256L << 20;

    @Mixin
    MachineOptions machine;

    @Option(names = "--syncs", paramLabel = "N", defaultValue = "20",
            description = "How many syncs to audit. Default: ${DEFAULT-VALUE}.")
    int syncs;

    @Option(names = "--sync-interval", paramLabel = "MS", defaultValue = "100",
            description = "Milliseconds the guest runs between syncs. Default: ${DEFAULT-VALUE}.")
    long intervalMs;

    @Option(names = "--json", description = "Print every sync and the totals as JSON.")
    boolean json;

    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Override
    public Integer call() throws Exception {
        if (syncs < 1 || syncs > 100_000) {
            throw new IllegalArgumentException("--syncs must be 1 to 100000, got " + syncs);
        }
        if (intervalMs < 1 || intervalMs > 3_600_000) {
            throw new IllegalArgumentException("--sync-interval must be 1 ms to 1 hour, got " + intervalMs);
        }
        if (!spec.commandLine().getParseResult().hasMatchedOption("--mem")) {
            machine.memory = DEFAULT_MEMORY;
        }
        machine.requireHostMemory(2, "the guest and the audit's copy of its RAM");
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        Bootstrap bootstrap = Bootstrap.create(Ferry.plugins(spec));
        Plan plan = bootstrap.plan(machine.accelerator, machine.trackers, machine.options());
        List<SyncReport> reports;
        AuditTotals totals;
        try (TrackedMachine tracked = bootstrap.build(plan, machine.config(), bootstrap.devices(machine.deviceSpecs()));
             Progress progress = new Progress(err, json)) {
            Machine m = tracked.machine();
            m.start();
            sleep(intervalMs); // the guest runs before logging starts, as before a migration
            try (TrackerAudit audit = TrackerAudit.start(m, tracked.trackers())) {
                if (!json) {
                    out.printf("audit of %s on %s: %s guest, %d vCPU%s, %s workload at %s, %d syncs every %d ms "
                                    + "(guest paused for each)%n", plan.trackerNames(), plan.accelerator().name(),
                            Sizes.format(machine.memory), machine.vcpus, machine.vcpus == 1 ? "" : "s", machine.pattern,
                            machine.rate == 0 ? "unlimited" : String.format("%.0f MiB/s", machine.rate), syncs,
                            intervalMs);
                    header(out, audit.trackerNames());
                }
                for (int i = 0; i < syncs; i++) {
                    sleep(intervalMs);
                    m.pause();
                    SyncReport r;
                    try {
                        r = audit.sync(true);
                    } finally {
                        m.resume();
                    }
                    m.vcpuFailure().ifPresent(e -> {
                        throw new IllegalStateException("a vCPU failed: " + e.getMessage(), e);
                    });
                    if (!json) {
                        row(out, r);
                    }
                    progress.update((i + 1.0) / syncs, "sync " + (i + 1) + "/" + syncs);
                }
                totals = audit.totals();
                reports = audit.reports();
            }
        }
        if (json) {
            out.println(new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT)
                    .writeValueAsString(json(plan, reports, totals)));
        } else {
            summary(out, totals);
        }
        if (totals.missed() > 0) {
            List<String> first = reports.stream().flatMap(r -> r.firstMissed().stream()).limit(10).toList();
            err.printf("ferry audit: error: %d written page%s reported by no tracker (first: %s): a migration with "
                    + "these trackers would lose them%n", totals.missed(), totals.missed() == 1 ? " was" : "s were", first);
            return Ferry.FAILURE;
        }
        return 0;
    }

    private static void header(PrintWriter out, List<String> names) {
        StringBuilder sb = new StringBuilder(String.format("%5s %9s", "sync", "written"));
        names.forEach(n -> sb.append(String.format(" %12s", trim(n))));
        if (names.size() > 1) {
            names.forEach(n -> sb.append(String.format(" %12s", "only " + trim(n))));
        }
        sb.append(String.format(" %8s %7s", "others", "missed"));
        out.println(sb);
    }

    private static void row(PrintWriter out, SyncReport r) {
        out.println(counts(Integer.toString(r.index()), r.written(), r.reported(), r.reportedOnlyBy())
                + String.format(" %8d %7d", r.othersReported(), r.missed()));
    }

    /** The columns a sync and the total share: written, then reported and reported alone per tracker. */
    private static String counts(String first, long written, List<Long> reported, List<Long> reportedOnlyBy) {
        StringBuilder sb = new StringBuilder(String.format("%5s %9d", first, written));
        reported.forEach(n -> sb.append(String.format(" %12d", n)));
        if (reported.size() > 1) {
            reportedOnlyBy.forEach(n -> sb.append(String.format(" %12d", n)));
        }
        return sb.toString();
    }

    private static String trim(String name) {
        return name.length() <= 12 ? name : name.substring(0, 12);
    }

    private static void summary(PrintWriter out, AuditTotals t) {
        out.println(counts("total", t.written(), t.reported(), t.reportedOnlyBy())
                + String.format(" %8s %7d", "", t.missed()));
        for (int i = 0; i < t.trackers().size(); i++) {
            double fp = t.falsePositiveRate(i);
            out.printf("%-12s reported %d pages, %d that no other tracker did; false positives %s (reported, content "
                            + "unchanged: sent twice, harmless); sync median %.3f ms, max %.3f ms%n",
                    t.trackers().get(i), t.reported().get(i), t.reportedOnlyBy().get(i),
                    Double.isNaN(fp) ? "-" : String.format("%.1f%%", 100 * fp), t.medianSyncNanos().get(i) / 1e6,
                    t.maxSyncNanos().get(i) / 1e6);
        }
        out.println(t.missed() == 0
                ? "missed: 0 (every page the guest wrote was reported by at least one tracker)"
                : "missed: " + t.missed() + " PAGES WRITTEN AND REPORTED BY NO TRACKER");
    }

    private static Map<String, Object> json(Plan plan, List<SyncReport> reports, AuditTotals t) {
        List<String> names = t.trackers();
        Map<String, Object> o = new LinkedHashMap<>();
        o.put("trackers", names);
        o.put("accelerator", plan.accelerator().name());
        List<Map<String, Object>> rows = new ArrayList<>();
        for (SyncReport r : reports) {
            Map<String, Object> row = new LinkedHashMap<>();
            row.put("sync", r.index());
            row.put("written", r.written());
            row.put("reported", byName(names, r.reported()));
            row.put("reported-only-by", byName(names, r.reportedOnlyBy()));
            row.put("false-positives", byName(names, r.falsePositives()));
            row.put("others", r.othersReported());
            row.put("missed", r.missed());
            row.put("first-missed", r.firstMissed());
            row.put("sync-ns", byName(names, r.syncNanos()));
            rows.add(row);
        }
        o.put("syncs", rows);
        Map<String, Object> total = new LinkedHashMap<>();
        total.put("syncs", t.syncs());
        total.put("written", t.written());
        total.put("missed", t.missed());
        total.put("reported", byName(names, t.reported()));
        total.put("reported-only-by", byName(names, t.reportedOnlyBy()));
        total.put("false-positives", byName(names, t.falsePositives()));
        total.put("median-sync-ns", byName(names, t.medianSyncNanos()));
        total.put("max-sync-ns", byName(names, t.maxSyncNanos()));
        o.put("total", total);
        return o;
    }

    private static Map<String, Long> byName(List<String> names, List<Long> values) {
        Map<String, Long> m = new LinkedHashMap<>();
        for (int i = 0; i < values.size(); i++) {
            m.put(names.get(i), values.get(i));
        }
        return m;
    }

    private static void sleep(long millis) {
        long end = System.nanoTime() + millis * 1_000_000L;
        long left;
        while ((left = end - System.nanoTime()) > 0) {
            LockSupport.parkNanos(left);
            if (Thread.interrupted()) {
                throw new IllegalStateException("interrupted");
            }
        }
    }
}
