package dev.ferry.audit;

import com.google.common.primitives.Longs;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * An audit's syncs added up, per tracker. Written pages, false positives and missed pages count
 * exact syncs only.
 *
 * @param trackers       the trackers, in the order of every list
 * @param syncs          syncs made
 * @param exactSyncs     syncs that compared RAM with the copy
 * @param written        pages written, over the exact syncs
 * @param missed         pages written and reported by nobody, over the exact syncs
 * @param reported       pages each tracker reported
 * @param reportedOnlyBy pages each tracker reported and no other listener did
 * @param reportedExact  pages each tracker reported in exact syncs
 * @param falsePositives pages each tracker reported, in exact syncs, whose content had not changed
 * @param medianSyncNanos each tracker's median sync cost
 * @param maxSyncNanos   each tracker's largest sync cost
 */
public record AuditTotals(List<String> trackers, int syncs, int exactSyncs, long written, long missed,
                          List<Long> reported, List<Long> reportedOnlyBy, List<Long> reportedExact,
                          List<Long> falsePositives,
                          List<Long> medianSyncNanos, List<Long> maxSyncNanos) {

    public AuditTotals {
        trackers = List.copyOf(trackers);
        reported = List.copyOf(reported);
        reportedOnlyBy = List.copyOf(reportedOnlyBy);
        reportedExact = List.copyOf(reportedExact);
        falsePositives = List.copyOf(falsePositives);
        medianSyncNanos = List.copyOf(medianSyncNanos);
        maxSyncNanos = List.copyOf(maxSyncNanos);
    }

    static AuditTotals of(List<String> trackers, List<SyncReport> syncs) {
        int n = trackers.size();
        long[] reported = new long[n];
        long[] only = new long[n];
        long[] fp = new long[n];
        long[] inExact = new long[n];
        long[][] cost = new long[n][syncs.size()];
        long written = 0;
        long missed = 0;
        int exact = 0;
        for (int s = 0; s < syncs.size(); s++) {
            SyncReport r = syncs.get(s);
            for (int i = 0; i < n; i++) {
                reported[i] += r.reported().get(i);
                only[i] += r.reportedOnlyBy().get(i);
                cost[i][s] = r.syncNanos().get(i);
                if (r.exact()) {
                    fp[i] += r.falsePositives().get(i);
                    inExact[i] += r.reported().get(i);
                }
            }
            if (r.exact()) {
                exact++;
                written += r.written();
                missed += r.missed();
            }
        }
        List<Long> median = new ArrayList<>();
        List<Long> max = new ArrayList<>();
        for (long[] c : cost) {
            Arrays.sort(c);
            median.add(c.length == 0 ? 0 : c[c.length / 2]);
            max.add(c.length == 0 ? 0 : c[c.length - 1]);
        }
        return new AuditTotals(trackers, syncs.size(), exact, written, missed, Longs.asList(reported), Longs.asList(only),
                Longs.asList(inExact), Longs.asList(fp), median, max);
    }

    /**
     * @return the share of tracker {@code i}'s reports in exact syncs whose page had not changed,
     *         0 to 1; NaN when it reported nothing in them
     */
    public double falsePositiveRate(int i) {
        long r = reportedExact.get(i);
        return r == 0 ? Double.NaN : (double) falsePositives.get(i) / r;
    }
}
