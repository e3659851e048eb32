package dev.ferry.examples.uffd;

import dev.ferry.api.DirtyTracker;
import dev.ferry.api.DirtyTrackerException;
import dev.ferry.api.MemorySection;
import dev.ferry.api.RamBlock;

import java.lang.foreign.MemorySegment;
import java.util.IdentityHashMap;
import java.util.Map;

/**
 * The {@code uffd-wp} tracker. Each RAM block that appears in the flat view is registered with the
 * userfaultfd as a whole, once: a block migrates whole whether or not all of it is mapped, and
 * the registration outlives region del/add, so pages written while a section is unmapped are not
 * lost. {@link #logGlobalStart()} write-protects every block (the migration's first pass sends
 * everything); each sync scans every block once, marking the written runs and re-protecting them
 * in the same ioctl, so a write racing the scan is reported now or at the next sync.
 *
 * <p>Topology and sync callbacks come from different threads; the few fields are guarded by the
 * tracker's lock.
 */
final class UffdWpTracker implements DirtyTracker {

    private final WriteProtect wp;
    /** Registered blocks, by identity, with the host memory registered. */
    private final Map<RamBlock, MemorySegment> blocks = new IdentityHashMap<>();
    private boolean logging;
    private long syncs;
    private long pagesReported;
    private long syncNanos;

    UffdWpTracker(WriteProtect wp) {
        this.wp = wp;
    }

    @Override
    public String name() {
        return UffdWpProvider.NAME;
    }

    @Override
    public synchronized void regionAdd(MemorySection section) {
        RamBlock block = section.ramBlock().orElse(null);
        if (block == null || blocks.containsKey(block)) {
            return;
        }
        MemorySegment host = block.host();
        try {
            wp.register(host.address(), host.byteSize());
            if (logging) {
                // A block that appears mid-migration: from here on its writes count.
                wp.protect(host.address(), host.byteSize());
            }
        } catch (UffdException e) {
            throw new DirtyTrackerException("tracker uffd-wp cannot watch RAM block " + block.name() + ": "
                    + e.getMessage(), e);
        }
        blocks.put(block, host);
    }

    @Override
    public synchronized void logGlobalStart() {
        logging = true;
        blocks.values().forEach(host -> wp.protect(host.address(), host.byteSize()));
    }

    @Override
    public synchronized void logGlobalStop() {
        // Pages stay protected: each takes one more minor fault on its next write, then none.
        logging = false;
    }

    @Override
    public synchronized void logSyncGlobal(boolean lastStage) {
        if (!logging) {
            return;
        }
        long start = System.nanoTime();
        for (var e : blocks.entrySet()) {
            RamBlock block = e.getKey();
            MemorySegment host = e.getValue();
            try {
                pagesReported += wp.collectWritten(host.address(), host.byteSize(), block::setDirty);
            } catch (UffdException ex) {
                // A page we cannot vouch for would be lost on the destination: fail the sync.
                throw new DirtyTrackerException("tracker uffd-wp could not scan RAM block " + block.name() + ": "
                        + ex.getMessage(), ex);
            }
        }
        syncs++;
        syncNanos += System.nanoTime() - start;
    }

    @Override
    public synchronized Map<String, Long> statistics() {
        return Map.of("syncs", syncs, "pages-reported", pagesReported, "sync-ns", syncNanos,
                "blocks", (long) blocks.size());
    }

    @Override
    public synchronized void close() {
        // Closing the userfaultfd drops every registration and its protection with it.
        blocks.clear();
        wp.close();
    }
}
