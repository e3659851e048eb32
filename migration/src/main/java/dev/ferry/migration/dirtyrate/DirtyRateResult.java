package dev.ferry.migration.dirtyrate;

import java.util.List;

/**
 * What a dirty-rate measurement found (QEMU's query-dirty-rate, plus the sync cost).
 *
 * @param accelerator        the accelerator that ran the guest
 * @param trackers           the trackers that reported pages
 * @param seconds            measured time, from the first to the last counted sync
 * @param dirtyRateMiBps     pages reported by the trackers, in MiB/s
 * @param guestWriteRateMiBps pages the vCPUs wrote, in MiB/s (a page written twice between two
 *                           syncs counts twice here and once in the dirty rate)
 * @param syncs              syncs counted
 * @param pagesReported      pages reported over all counted syncs
 * @param syncMeanMicros     mean cost of one sync (all trackers, and the fold into the
 *                           migration bitmap), in microseconds
 * @param syncMaxMicros      the costliest sync, in microseconds
 */
public record DirtyRateResult(String accelerator, List<String> trackers, double seconds, double dirtyRateMiBps,
                              double guestWriteRateMiBps, long syncs, long pagesReported, double syncMeanMicros,
                              double syncMaxMicros) {

    /** @return the mean number of pages one sync reported */
    public double pagesPerSync() {
        return syncs == 0 ? 0 : (double) pagesReported / syncs;
    }
}
