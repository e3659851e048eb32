package dev.ferry.api;

import java.util.Map;

/**
 * A dirty page tracker attached to a running machine. It is a {@link MemoryListener}: it learns
 * the guest's memory layout from region add/del, arms logging on {@link #logGlobalStart()} or
 * {@link #logStart}, and on each sync marks the pages written since the previous sync in the
 * sections' {@link RamBlock}s — through {@link #logSync} per section, or once through
 * {@link #logSyncGlobal}.
 *
 * <p>A page that was written and not reported is lost on the migration's destination, so a
 * tracker that cannot vouch for a sync (a ring that overflowed, a log it could not read) throws
 * {@link DirtyTrackerException} rather than report less.
 */
public interface DirtyTracker extends MemoryListener, AutoCloseable {

    /**
     * Counters for reports, e.g. {@code syncs}, {@code pages-reported}, {@code sync-ns}.
     *
     * @return a snapshot of this tracker's counters; empty by default
     */
    default Map<String, Long> statistics() {
        return Map.of();
    }

    /** Releases what the tracker holds (threads, mappings). Called after it is unregistered. */
    @Override
    default void close() {
    }
}
