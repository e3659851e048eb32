package dev.ferry.audit;

import java.util.List;

/**
 * One audited sync. Lists run in the order of {@link TrackerAudit#trackerNames()}.
 *
 * @param index          1 for the first sync
 * @param exact          whether RAM was compared with the copy (guest paused)
 * @param written        pages whose content changed since the previous sync's copy; -1 unless exact
 * @param reported       pages each tracker reported
 * @param reportedOnlyBy pages each tracker reported and no other listener did
 * @param falsePositives pages each tracker reported whose content had not changed; empty unless exact.
 *                       After syncs taken while the guest ran, this includes pages written again
 *                       after such a sync cleared them and before it copied them
 * @param othersReported pages reported by listeners that are not audited (vhost loggers) or
 *                       marked between syncs
 * @param missed         pages written and reported by nobody: lost in a migration; -1 unless exact
 * @param firstMissed    up to ten missed pages, as {@code block:page}
 * @param syncNanos      what each tracker's part of the sync cost
 */
public record SyncReport(int index, boolean exact, long written, List<Long> reported, List<Long> reportedOnlyBy,
                         List<Long> falsePositives, long othersReported, long missed, List<String> firstMissed,
                         List<Long> syncNanos) {

    public SyncReport {
        reported = List.copyOf(reported);
        reportedOnlyBy = List.copyOf(reportedOnlyBy);
        falsePositives = List.copyOf(falsePositives);
        firstMissed = List.copyOf(firstMissed);
        syncNanos = List.copyOf(syncNanos);
    }
}
