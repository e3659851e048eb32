package dev.ferry.migration.timeline;

import dev.ferry.migration.MigrationStats;
import dev.ferry.migration.MigrationStatus;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.function.Consumer;
import java.util.function.ToLongFunction;

/**
 * Records the figures a migration reports ({@link dev.ferry.migration.Migration#run} reports
 * them about every 100 ms and right after every dirty-log sync), so that syncs and the ends of
 * passes are placed where they happened, not at the next tick.
 */
public final class Timeline implements Consumer<MigrationStats> {

    private final List<MigrationStats> samples = new ArrayList<>();

    @Override
    public synchronized void accept(MigrationStats s) {
        samples.add(s);
    }

    /** @return the figures in the order they came */
    public synchronized List<MigrationStats> samples() {
        return List.copyOf(samples);
    }

    /** @return the last figures: the migration's result once it has ended */
    public synchronized Optional<MigrationStats> last() {
        return samples.isEmpty() ? Optional.empty() : Optional.of(samples.getLast());
    }

    /** @return when (ms since the start) each dirty-log sync the migration reported took place */
    public List<Long> syncs() {
        // Setup ends with one sync (ram_init_bitmaps); the timeline marks the ones after it.
        return changes(MigrationStats::dirtySyncCount, 1);
    }

    /** @return when (ms since the start) each pass over the dirty bitmap ended */
    public List<Long> passEnds() {
        return changes(MigrationStats::iterations, 0);
    }

    /**
     * @return when (ms since the start) the guest was stopped for switchover: the last figures
     *         while still iterating, taken as the switchover was decided; empty if it did not
     *         complete
     */
    public Optional<Long> switchover() {
        List<MigrationStats> all = samples();
        if (all.isEmpty() || all.getLast().status() != MigrationStatus.COMPLETED) {
            return Optional.empty();
        }
        for (int i = all.size() - 2; i >= 0; i--) {
            if (all.get(i).status() == MigrationStatus.ACTIVE) {
                return Optional.of(all.get(i).totalTimeMs());
            }
        }
        return Optional.of(all.getLast().setupTimeMs());
    }

    /**
     * @return the times of the samples while iterating at which {@code counter} had grown since
     *         the one before; {@code before} is its value when iterating began
     */
    private List<Long> changes(ToLongFunction<MigrationStats> counter, long before) {
        List<Long> at = new ArrayList<>();
        long seen = before;
        for (MigrationStats s : samples()) {
            long n = counter.applyAsLong(s);
            if (s.status() == MigrationStatus.ACTIVE && n > seen) {
                at.add(s.totalTimeMs());
                seen = n;
            }
        }
        return at;
    }
}
