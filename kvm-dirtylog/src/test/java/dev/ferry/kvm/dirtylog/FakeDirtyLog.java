package dev.ferry.kvm.dirtylog;

import dev.ferry.kvm.KvmMemslot;
import dev.ferry.kvm.KvmMemslots;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.BitSet;
import java.util.IdentityHashMap;
import java.util.Map;

/**
 * A model of KVM's per-slot dirty bitmaps (virt/kvm/kvm_main.c) for tests without /dev/kvm:
 * GET copies the log, and clears it unless manual protect is on; CLEAR clears the bits set in the
 * given bitmap, after the same argument checks as kvm_clear_dirty_log_protect; a slot that starts
 * logging under KVM_DIRTY_LOG_INITIALLY_SET starts with every bit set.
 */
final class FakeDirtyLog implements DirtyLogIoctls {

    private final KvmMemslots slots;
    private final boolean manualProtect;
    private final Map<KvmMemslot, BitSet> logs = new IdentityHashMap<>();
    private final Map<KvmMemslot, Long> generations = new IdentityHashMap<>();
    long gets;
    long clears;

    FakeDirtyLog(KvmMemslots slots, boolean manualProtect) {
        this.slots = slots;
        this.manualProtect = manualProtect;
    }

    private synchronized BitSet log(KvmMemslot slot) {
        if (!slot.logging() || slot.removed()) {
            throw new IllegalStateException("ENOENT: " + slot + " has no dirty bitmap");
        }
        if (generations.getOrDefault(slot, -1L) != slot.logGeneration()) {
            BitSet fresh = new BitSet();
            if (manualProtect) {
                fresh.set(0, (int) slot.pages()); // KVM_DIRTY_LOG_INITIALLY_SET
            }
            logs.put(slot, fresh);
            generations.put(slot, slot.logGeneration());
        }
        return logs.get(slot);
    }

    /** The guest writes page {@code slotPage} of {@code slot}. */
    synchronized void guestWrite(KvmMemslot slot, long slotPage) {
        if (slot.logging() && !slot.removed()) {
            log(slot).set((int) slotPage);
        }
    }

    private KvmMemslot slot(int id) {
        return slots.get(id).orElseThrow(() -> new IllegalStateException("ENOENT: no slot " + id));
    }

    @Override
    public synchronized void getDirtyLog(int id, MemorySegment bitmap) {
        KvmMemslot slot = slot(id);
        BitSet log = log(slot);
        long[] words = log.toLongArray();
        long n = (slot.pages() + 63) / 64;
        for (int w = 0; w < n; w++) {
            bitmap.set(ValueLayout.JAVA_LONG_UNALIGNED, w * 8L, w < words.length ? words[w] : 0);
        }
        if (!manualProtect) {
            log.clear();
        }
        gets++;
    }

    @Override
    public synchronized void clearDirtyLog(int id, long firstPage, int numPages, MemorySegment bitmap) {
        if (!manualProtect) {
            throw new IllegalStateException("EINVAL: KVM_CLEAR_DIRTY_LOG without manual protect");
        }
        KvmMemslot slot = slot(id);
        long pages = slot.pages();
        if (firstPage % 64 != 0 || firstPage > pages || numPages > pages - firstPage
                || (numPages < pages - firstPage && numPages % 64 != 0)) {
            throw new IllegalArgumentException("EINVAL: first " + firstPage + " num " + numPages + " of " + pages);
        }
        BitSet log = log(slot);
        for (int i = 0; i < numPages; i++) {
            long word = bitmap.get(ValueLayout.JAVA_LONG_UNALIGNED, (i >>> 6) * 8L);
            if ((word >>> (i & 63) & 1) != 0) {
                log.clear((int) (firstPage + i));
            }
        }
        clears++;
    }
}
