package dev.ferry.migration;

/**
 * The decisions of precopy, as pure functions of measured figures (so they are tested on their
 * own, as Cloud Hypervisor does).
 */
public final class Convergence {

    private Convergence() {
    }

    /**
     * @param remainingBytes   dirty bytes still to send
     * @param bytesPerSecond   measured bandwidth
     * @param fixedNanos       what switchover costs whatever is left (final sync, device state,
     *                         verification), measured
     * @return the expected downtime in nanoseconds if we stopped the guest now; unknown
     *         ({@code Long.MAX_VALUE}) while there is something to send and no bandwidth figure
     */
    public static long expectedDowntimeNanos(long remainingBytes, double bytesPerSecond, long fixedNanos) {
        if (remainingBytes <= 0) {
            // Nothing to send: no bandwidth figure is needed to know what switchover costs.
            return fixedNanos;
        }
        if (bytesPerSecond <= 0) {
            return Long.MAX_VALUE;
        }
        return fixedNanos + (long) (remainingBytes / bytesPerSecond * 1e9);
    }

    /** @return whether to switch over: the expected downtime fits the limit */
    public static boolean canSwitchover(long expectedDowntimeNanos, long downtimeLimitNanos) {
        return expectedDowntimeNanos <= downtimeLimitNanos;
    }

    /**
     * Whether, with the expected downtime already within the limit, one more pass with the guest
     * running pays for itself: what is left is sent while the guest runs, and switchover then
     * sends only what the guest dirties meanwhile. It pays when that would leave at most half the
     * downtime expected now. QEMU switches over as soon as the estimate fits, so the rest of a
     * first pass, pages never sent, goes with the guest stopped; a pass sends those at the same
     * speed, so total time hardly changes while downtime falls to switchover's fixed cost. A guest
     * that dirties pages faster than half the bandwidth never makes a pass pay.
     *
     * @param remainingBytes      dirty bytes still to send
     * @param bytesPerSecond      measured bandwidth
     * @param dirtyBytesPerSecond what the guest dirtied per second since the previous sync
     * @param fixedNanos          what switchover costs whatever is left
     */
    public static boolean anotherPassPays(long remainingBytes, double bytesPerSecond, double dirtyBytesPerSecond,
                                          long fixedNanos) {
        if (remainingBytes <= 0 || bytesPerSecond <= 0) {
            return false;
        }
        long now = expectedDowntimeNanos(remainingBytes, bytesPerSecond, fixedNanos);
        double dirtiedWhileSending = Math.max(0, dirtyBytesPerSecond) * (remainingBytes / bytesPerSecond);
        long after = expectedDowntimeNanos((long) Math.min(dirtiedWhileSending, Long.MAX_VALUE / 2.0), bytesPerSecond,
                fixedNanos);
        return after <= now / 2;
    }

    /**
     * QEMU's migration_trigger_throttle: in a sync period the guest dirtied more than
     * {@code triggerPercent}% of what the link sent.
     */
    public static boolean dirtyRateTooHigh(long bytesDirtiedInPeriod, long bytesSentInPeriod, int triggerPercent) {
        return bytesDirtiedInPeriod > bytesSentInPeriod * triggerPercent / 100;
    }

    /**
     * Whether precopy cannot converge: at the highest throttle the guest still dirtied, in a sync
     * period, at least as many pages as were sent, so no pass leaves less to send than the one
     * before. (Below that the dirty set shrinks pass by pass, however slowly: precopy goes on.)
     * Pages, not bytes: a stream's headers must not tip the balance.
     */
    public static boolean cannotConverge(int throttle, int throttleMax, long pagesDirtiedInPeriod,
                                         long pagesSentInPeriod) {
        return throttle >= throttleMax && pagesDirtiedInPeriod >= pagesSentInPeriod;
    }

    /**
     * QEMU's mig_throttle_guest_down: the first step sets the initial throttle, each later one
     * adds the increment, up to the maximum.
     *
     * @return the new throttle percentage
     */
    public static int nextThrottle(int current, int initial, int increment, int max) {
        return current == 0 ? Math.min(initial, max) : Math.min(current + increment, max);
    }
}
