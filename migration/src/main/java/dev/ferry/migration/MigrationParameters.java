package dev.ferry.migration;

import java.time.Duration;

/**
 * Tunables of a migration, with QEMU's names and defaults (migrate-set-parameters) where QEMU
 * has them.
 *
 * @param maxBandwidth      bytes per second the stream may use; 0 for no limit
 * @param downtimeLimit     the longest the guest may be stopped at switchover (QEMU: 300 ms)
 * @param timeout           give up (and keep the guest on the source) after this long
 * @param autoConverge      throttle the guest when it dirties faster than the link sends
 * @param throttleTrigger   percent of the sent bytes that dirtied bytes must exceed (QEMU: 50)
 * @param throttleInitial   first throttle percentage (QEMU: cpu-throttle-initial 20)
 * @param throttleIncrement step added each time (QEMU: cpu-throttle-increment 10)
 * @param throttleMax       ceiling (QEMU: max-cpu-throttle 99)
 * @param clearBitmapShift  log2 pages per dirty-log clear chunk (QEMU: 18, 1 GiB)
 */
public record MigrationParameters(long maxBandwidth, Duration downtimeLimit, Duration timeout, boolean autoConverge,
                                  int throttleTrigger, int throttleInitial, int throttleIncrement, int throttleMax,
                                  int clearBitmapShift) {

    public MigrationParameters {
        if (maxBandwidth < 0) {
            throw new IllegalArgumentException("max-bandwidth must not be negative");
        }
        if (downtimeLimit.isNegative() || downtimeLimit.isZero() || downtimeLimit.toMillis() > 2_000_000) {
            throw new IllegalArgumentException("downtime-limit must be between 1 ms and 2000 s");
        }
        if (timeout.isNegative() || timeout.isZero()) {
            throw new IllegalArgumentException("timeout must be positive");
        }
        if (throttleInitial < 1 || throttleInitial > 99 || throttleIncrement < 1 || throttleIncrement > 99
                || throttleMax < 1 || throttleMax > 99 || throttleTrigger < 1 || throttleTrigger > 100) {
            throw new IllegalArgumentException("throttle parameters must be percentages between 1 and 99");
        }
    }

    /** @return QEMU's defaults, with no bandwidth limit, auto-converge on and a 10 minute timeout */
    public static MigrationParameters defaults() {
        return new MigrationParameters(0, Duration.ofMillis(300), Duration.ofMinutes(10), true, 50, 20, 10, 99, 18);
    }

    public MigrationParameters withMaxBandwidth(long bytesPerSecond) {
        return new MigrationParameters(bytesPerSecond, downtimeLimit, timeout, autoConverge, throttleTrigger,
                throttleInitial, throttleIncrement, throttleMax, clearBitmapShift);
    }

    public MigrationParameters withDowntimeLimit(Duration limit) {
        return new MigrationParameters(maxBandwidth, limit, timeout, autoConverge, throttleTrigger, throttleInitial,
                throttleIncrement, throttleMax, clearBitmapShift);
    }

    public MigrationParameters withTimeout(Duration t) {
        return new MigrationParameters(maxBandwidth, downtimeLimit, t, autoConverge, throttleTrigger, throttleInitial,
                throttleIncrement, throttleMax, clearBitmapShift);
    }

    public MigrationParameters withAutoConverge(boolean on) {
        return new MigrationParameters(maxBandwidth, downtimeLimit, timeout, on, throttleTrigger, throttleInitial,
                throttleIncrement, throttleMax, clearBitmapShift);
    }

    public MigrationParameters withClearBitmapShift(int shift) {
        return new MigrationParameters(maxBandwidth, downtimeLimit, timeout, autoConverge, throttleTrigger,
                throttleInitial, throttleIncrement, throttleMax, shift);
    }
}
