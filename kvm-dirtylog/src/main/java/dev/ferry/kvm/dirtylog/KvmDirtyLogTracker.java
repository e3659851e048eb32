package dev.ferry.kvm.dirtylog;

import dev.ferry.api.DirtyTracker;
import dev.ferry.api.DirtyTrackerException;
import dev.ferry.api.MemorySection;
import dev.ferry.kvm.KvmMemslot;
import dev.ferry.kvm.KvmMemslots;
import dev.ferry.kvm.KvmVm;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.IdentityHashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The {@code kvm-dirtylog} tracker: KVM's per-slot dirty bitmaps, read per section (QEMU's
 * kvm_log_sync / kvm_physical_sync_dirty_bitmap and kvm_log_clear).
 *
 * <h2>Sync</h2>
 * {@link #logSync} finds the memory slot of the section in the accelerator's table, fetches its
 * log with KVM_GET_DIRTY_LOG into the slot's off-heap bitmap (allocated once per slot and
 * reused), and folds it into the section's RAM block with {@link dev.ferry.api.RamBlock#setDirtyBitmap},
 * a 64-bit word at a time; bit n is page {@code slot.firstPage() + n} of the block.
 *
 * <h2>Manual protect</h2>
 * Without it, KVM_GET_DIRTY_LOG clears the kernel's log and write-protects the pages it
 * returned, all at once. With KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 (enabled by the accelerator with
 * KVM_DIRTY_LOG_INITIALLY_SET, so starting the log write-protects nothing and the first fetch
 * reports every page) the fetch leaves the log alone, and {@link #logClear} — which the migration
 * calls for each chunk just before it sends the chunk's pages — clears and re-protects that chunk
 * with KVM_CLEAR_DIRTY_LOG. Only bits of the last fetched copy are cleared, never bits the kernel
 * set since, and the copy forgets them once cleared: see {@link ClearRange}.
 *
 * <h2>Concurrency</h2>
 * Every ioctl naming a slot id runs under the slot table's lock, which the accelerator holds
 * while it creates and deletes slots, so ids are never stale. The accelerator fetches and marks
 * a logging slot's log itself before deleting the slot, so removing RAM while logging loses no page.
 */
public final class KvmDirtyLogTracker implements DirtyTracker {

    private static final ValueLayout.OfLong WORD = ValueLayout.JAVA_LONG_UNALIGNED;

    private final KvmMemslots slots;
    private final DirtyLogIoctls ioctls;
    private final boolean manualProtect;
    /** Per-slot state, keyed by the slot object: a reused id is another slot. Guarded by the slot lock. */
    private final Map<KvmMemslot, SlotLog> logs = new IdentityHashMap<>();
    private final AtomicLong syncs = new AtomicLong();
    private final AtomicLong pagesReported = new AtomicLong();
    private final AtomicLong syncNanos = new AtomicLong();
    /** The kernel's share of syncNanos and clearNanos: KVM_GET_DIRTY_LOG and KVM_CLEAR_DIRTY_LOG alone. */
    private final AtomicLong getLogNanos = new AtomicLong();
    private final AtomicLong clearLogNanos = new AtomicLong();
    private final AtomicLong clears = new AtomicLong();
    private final AtomicLong clearsSkipped = new AtomicLong();
    private final AtomicLong clearNanos = new AtomicLong();
    private boolean closed;

    /** A slot's fetched log and the buffer for clear requests. */
    private static final class SlotLog {
        final long generation;
        final Arena arena = Arena.ofShared();
        final MemorySegment fetched;
        final MemorySegment clearMask;

        SlotLog(KvmMemslot slot, boolean manualProtect) {
            this.generation = slot.logGeneration();
            long bytes = KvmVm.bitmapBytes(slot.size());
            this.fetched = arena.allocate(bytes, 8);
            this.clearMask = manualProtect ? arena.allocate(bytes, 8) : MemorySegment.NULL;
        }
    }

    /**
     * @param slots         the accelerator's memory slot table
     * @param ioctls        the VM's dirty-log ioctls
     * @param manualProtect whether the VM has KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 enabled
     */
    public KvmDirtyLogTracker(KvmMemslots slots, DirtyLogIoctls ioctls, boolean manualProtect) {
        this.slots = slots;
        this.ioctls = ioctls;
        this.manualProtect = manualProtect;
    }

    @Override
    public String name() {
        return KvmDirtyLogProvider.NAME;
    }

    /** @return whether fetched pages stay dirty in KVM until {@link #logClear} */
    public boolean manualProtect() {
        return manualProtect;
    }

    /** The slot's state, new if the slot is new to us or logging restarted (KVM made a new log). */
    private SlotLog logFor(KvmMemslot slot) {
        SlotLog log = logs.get(slot);
        if (log == null || log.generation != slot.logGeneration()) {
            if (log != null) {
                log.arena.close();
            }
            log = new SlotLog(slot, manualProtect);
            logs.put(slot, log);
        }
        return log;
    }

    @Override
    public void logSync(MemorySection section) {
        slots.lock().lock();
        try {
            ensureOpen();
            KvmMemslot slot = slots.find(section).orElse(null);
            if (slot == null || !slot.logging()) {
                return; // no slot: its accesses trap and the address space marks them itself
            }
            SlotLog log = logFor(slot);
            long start = System.nanoTime();
            try {
                ioctls.getDirtyLog(slot.id(), log.fetched);
            } catch (RuntimeException e) {
                throw new DirtyTrackerException("kvm-dirtylog: cannot read the dirty log of " + slot + ": "
                        + e.getMessage(), e);
            }
            getLogNanos.addAndGet(System.nanoTime() - start);
            slot.ramBlock().setDirtyBitmap(slot.firstPage(), log.fetched, slot.pages());
            syncNanos.addAndGet(System.nanoTime() - start);
            pagesReported.addAndGet(countBits(log.fetched));
            syncs.incrementAndGet();
        } finally {
            slots.lock().unlock();
        }
    }

    private static long countBits(MemorySegment bitmap) {
        long n = 0;
        long words = bitmap.byteSize() / 8;
        for (long w = 0; w < words; w++) {
            n += Long.bitCount(bitmap.get(WORD, w * 8));
        }
        return n;
    }

    @Override
    public void logClear(MemorySection section, long offset, long length) {
        if (!manualProtect || length <= 0) {
            return; // without manual protect KVM_GET_DIRTY_LOG has cleared already
        }
        slots.lock().lock();
        try {
            ensureOpen();
            KvmMemslot slot = slots.find(section).orElse(null);
            if (slot == null || !slot.logging()) {
                return;
            }
            SlotLog log = logs.get(slot);
            if (log == null || log.generation != slot.logGeneration()) {
                return; // nothing fetched from this log yet, so nothing may be cleared
            }
            int pageSize = KvmVm.PAGE_SIZE;
            long first = Math.max(0, Math.floorDiv(offset, pageSize) - slot.firstPage());
            long end = Math.min(slot.pages(), Math.ceilDiv(offset + length, pageSize) - slot.firstPage());
            if (end <= first) {
                return;
            }
            ClearRange range = ClearRange.of(slot.pages(), first, end - first);
            long start = System.nanoTime();
            if (range.buildMask(log.fetched, log.clearMask) == 0) {
                clearsSkipped.incrementAndGet();
                return; // nothing fetched dirty in the range: the ioctl would clear nothing
            }
            long ioctlStart = System.nanoTime();
            try {
                ioctls.clearDirtyLog(slot.id(), range.firstPage(), range.numPages(), log.clearMask);
                clearLogNanos.addAndGet(System.nanoTime() - ioctlStart);
            } catch (RuntimeException e) {
                throw new DirtyTrackerException("kvm-dirtylog: cannot clear pages [" + range.firstPage() + ", +"
                        + range.numPages() + ") of " + slot + ": " + e.getMessage(), e);
            }
            range.clearFetched(log.fetched);
            clearNanos.addAndGet(System.nanoTime() - start);
            clears.incrementAndGet();
        } finally {
            slots.lock().unlock();
        }
    }

    @Override
    public void regionDel(MemorySection section) {
        // The accelerator (priority 10) deleted the slot before us and reported its log.
        slots.lock().lock();
        try {
            forgetRemovedSlots();
        } finally {
            slots.lock().unlock();
        }
    }

    private void forgetRemovedSlots() {
        for (Iterator<Map.Entry<KvmMemslot, SlotLog>> it = logs.entrySet().iterator(); it.hasNext(); ) {
            Map.Entry<KvmMemslot, SlotLog> e = it.next();
            if (e.getKey().removed()) {
                e.getValue().arena.close();
                it.remove();
            }
        }
    }

    /** @return the number of slots whose fetched log the tracker holds (for tests) */
    int cachedSlots() {
        slots.lock().lock();
        try {
            return logs.size();
        } finally {
            slots.lock().unlock();
        }
    }

    @Override
    public Map<String, Long> statistics() {
        Map<String, Long> stats = new LinkedHashMap<>();
        stats.put("syncs", syncs.get());
        stats.put("pages-reported", pagesReported.get());
        stats.put("sync-ns", syncNanos.get());
        stats.put("get-dirty-log-ns", getLogNanos.get());
        stats.put("clears", clears.get());
        stats.put("clears-skipped", clearsSkipped.get());
        stats.put("clear-ns", clearNanos.get());
        stats.put("clear-dirty-log-ns", clearLogNanos.get());
        stats.put("manual-protect", manualProtect ? 1L : 0L);
        return stats;
    }

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException("tracker kvm-dirtylog is closed");
        }
    }

    @Override
    public void close() {
        slots.lock().lock();
        try {
            if (!closed) {
                closed = true;
                logs.values().forEach(l -> l.arena.close());
                logs.clear();
            }
        } finally {
            slots.lock().unlock();
        }
    }
}
