package dev.ferry.kvm;

import dev.ferry.memory.linux.Linux;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;

/**
 * One vCPU's dirty ring: an array of struct kvm_dirty_gfn the kernel fills as the guest dirties
 * pages, mapped from the vCPU fd at page {@value KvmIoctls#KVM_DIRTY_LOG_PAGE_OFFSET}. Harvesting
 * follows QEMU's kvm_dirty_ring_reap_one: from the fetch index on, each entry whose flags read
 * (with acquire) as DIRTY is reported and then set to RESET (with release); after that
 * {@link KvmVm#resetDirtyRings()} lets KVM reuse the entries and re-protect the pages.
 */
public final class KvmDirtyRing {

    /** Receives each harvested entry. */
    @FunctionalInterface
    public interface GfnConsumer {
        /**
         * @param slot   kvm_dirty_gfn.slot: address space id in the high 16 bits, slot id in the low 16
         * @param offset page index within the slot
         */
        void dirty(int slot, long offset);
    }

    private static final long ENTRY_BYTES = KvmStructs.KVM_DIRTY_GFN.byteSize();
    private static final VarHandle FLAGS = ValueLayout.JAVA_INT.varHandle();

    private final MemorySegment ring;
    private final int entries;
    /** Next entry to look at; only grows, taken modulo the ring size (as in the kernel). */
    private long fetchIndex;

    KvmDirtyRing(MemorySegment ring) {
        this.ring = ring;
        this.entries = (int) (ring.byteSize() / ENTRY_BYTES);
    }

    /** @return the mapped ring: {@link #size()} struct kvm_dirty_gfn entries */
    public MemorySegment segment() {
        return ring;
    }

    /** @return the number of entries */
    public int size() {
        return entries;
    }

    /**
     * Reports every entry the kernel has published since the last harvest and marks it collected.
     * Safe to call from a reaper thread while the vCPU runs; harvests of one ring are serialized.
     *
     * @return the number of entries harvested
     */
    public synchronized int harvest(GfnConsumer consumer) {
        int count = 0;
        while (count < entries) {
            long at = (fetchIndex & (entries - 1)) * ENTRY_BYTES;
            int flags = (int) FLAGS.getAcquire(ring, at);
            if (flags != KvmIoctls.KVM_DIRTY_GFN_F_DIRTY) {
                break; // not published yet (or already collected and awaiting reset)
            }
            consumer.dirty(ring.get(ValueLayout.JAVA_INT, at + 4), ring.get(ValueLayout.JAVA_LONG, at + 8));
            FLAGS.setRelease(ring, at, KvmIoctls.KVM_DIRTY_GFN_F_RESET);
            fetchIndex++;
            count++;
        }
        return count;
    }

    void unmap() {
        Linux.munmap(ring);
    }
}
