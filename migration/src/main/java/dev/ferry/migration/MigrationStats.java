package dev.ferry.migration;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A snapshot of a migration's figures, named as QEMU's query-migrate names them.
 *
 * @param status           where it is
 * @param error            why it failed or was cancelled, else empty
 * @param totalTimeMs      from start to now, or to the end
 * @param setupTimeMs      time spent in setup
 * @param downtimeMs       guest stopped time at switchover (pause to destination go), once known
 * @param verifyTimeMs     time the source spent, once the guest ran at the destination, checking the
 *                         destination's RAM digests against its own RAM (Ferry's; QEMU does not verify)
 * @param expectedDowntimeMs what the last estimate said switchover would cost
 * @param transferred      bytes sent
 * @param remaining        dirty bytes still to send
 * @param total            guest RAM bytes
 * @param duplicate        zero pages (sent as a flag)
 * @param normal           pages sent in full
 * @param dirtySyncCount   dirty-log syncs done
 * @param dirtyPagesRate   pages dirtied per second, last period
 * @param pagesPerSecond   pages sent per second, last period
 * @param mbps             throughput in megabits per second, last period
 * @param iterations       passes over the dirty bitmap
 * @param throttlePercent  the auto-converge throttle now; once the migration has ended (the source
 *                         then runs unthrottled), the highest it reached
 * @param trackers         trackers used
 */
public record MigrationStats(MigrationStatus status, String error, long totalTimeMs, long setupTimeMs,
                             long downtimeMs, long verifyTimeMs, long expectedDowntimeMs, long transferred,
                             long remaining, long total, long duplicate, long normal, long dirtySyncCount,
                             long dirtyPagesRate, long pagesPerSecond, double mbps, long iterations,
                             int throttlePercent, List<String> trackers) {

    /** @return what the guest dirtied, in bytes per second ({@code dirtyPagesRate} in bytes) */
    public double dirtyBytesPerSecond() {
        return dirtyPagesRate * 4096.0;
    }

    /** @return what the stream carried, in bytes per second ({@code mbps} in bytes) */
    public double sentBytesPerSecond() {
        return mbps * 1e6 / 8;
    }

    /**
     * Bytes sent per second from the end of setup to now, or to the guest running at the
     * destination: QEMU's final mbps ({@code migration_calculate_complete}: transferred over
     * total-time minus setup-time). QEMU's total-time ends once the source has sent everything;
     * Ferry's goes on while the source checks the destination's digests, which moves nothing, so
     * that time is left out here (it stays in {@code totalTimeMs}).
     *
     * @return the throughput; 0 before any time has passed
     */
    public double bytesPerSecondAfterSetup() {
        long ms = totalTimeMs - setupTimeMs - verifyTimeMs;
        return ms <= 0 ? 0 : transferred * 1000.0 / ms;
    }

    /** @return the figures under query-migrate's names */
    public Map<String, Object> toQemuMap() {
        Map<String, Object> ram = new LinkedHashMap<>();
        ram.put("transferred", transferred);
        ram.put("remaining", remaining);
        ram.put("total", total);
        ram.put("duplicate", duplicate);
        ram.put("normal", normal);
        ram.put("normal-bytes", normal * 4096);
        ram.put("dirty-sync-count", dirtySyncCount);
        ram.put("dirty-pages-rate", dirtyPagesRate);
        ram.put("pages-per-second", pagesPerSecond);
        ram.put("mbps", Math.round(mbps * 100) / 100.0);
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("status", status.qemuName());
        if (!error.isEmpty()) {
            m.put("error-desc", error);
        }
        m.put("total-time", totalTimeMs);
        m.put("setup-time", setupTimeMs);
        if (status == MigrationStatus.COMPLETED) {
            m.put("downtime", downtimeMs);
            m.put("verify-time", verifyTimeMs);
        }
        m.put("expected-downtime", expectedDowntimeMs);
        m.put("ram", ram);
        m.put("iterations", iterations);
        m.put("cpu-throttle-percentage", throttlePercent);
        m.put("trackers", trackers);
        return m;
    }
}
