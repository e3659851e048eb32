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
    private volatile long fetchIndex;

    KvmDirtyRing(MemorySegment ring) {
        this.ring = ring;
        this.entries = (int) (ring.byteSize() / ENTRY_BYTES);
    }

    /**
     * A ring over memory that something other than a vCPU fd fills: a model of the kernel in
     * tests and simulations. The producer must publish entries as KVM does (slot and offset
     * first, then flags = DIRTY with release) and reuse an entry only after it was reset.
     *
     * @param ring native memory holding a power of two of struct kvm_dirty_gfn entries
     * @throws IllegalArgumentException if it does not
     */
    public static KvmDirtyRing over(MemorySegment ring) {
        long n = ring.byteSize() / ENTRY_BYTES;
        if (!ring.isNative() || ring.byteSize() % ENTRY_BYTES != 0 || n < 1 || n > 1 << 30 || Long.bitCount(n) != 1
                || ring.address() % 8 != 0) {
            throw new IllegalArgumentException("a dirty ring needs native, 8-byte aligned memory holding a power of two "
                    + "of " + ENTRY_BYTES + "-byte entries, got " + ring.byteSize() + " bytes");
        }
        return new KvmDirtyRing(ring);
    }

    /**
     * Whether at least {@code n} entries are published and not yet harvested: one acquire load of
     * the flags of entry {@code fetchIndex + n - 1} (the kernel publishes in ring order and never
     * overtakes an entry that has not been reset). Cheap enough for every vCPU exit; while a
     * harvest runs concurrently the answer may lag by the entries it is taking.
     *
     * @param n 1 to {@link #size()}
     */
    public boolean pendingAtLeast(int n) {
        if (n < 1 || n > entries) {
            throw new IllegalArgumentException("pending count " + n + " outside 1.." + entries);
        }
        long at = ((fetchIndex + n - 1) & (entries - 1)) * ENTRY_BYTES;
        return (int) FLAGS.getAcquire(ring, at) == KvmIoctls.KVM_DIRTY_GFN_F_DIRTY;
    }

    /** @return entries harvested from this ring since it was created */
    public long harvested() {
        return fetchIndex;
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
        long index = fetchIndex;
        try {
            while (count < entries) {
                long at = ((index + count) & (entries - 1)) * ENTRY_BYTES;
                int flags = (int) FLAGS.getAcquire(ring, at);
                if (flags != KvmIoctls.KVM_DIRTY_GFN_F_DIRTY) {
                    break; // not published yet (or already collected and awaiting reset)
                }
                consumer.dirty(ring.get(ValueLayout.JAVA_INT, at + 4), ring.get(ValueLayout.JAVA_LONG, at + 8));
                FLAGS.setRelease(ring, at, KvmIoctls.KVM_DIRTY_GFN_F_RESET);
                count++;
            }
        } finally {
            // Entries marked RESET are behind us even if the consumer threw on a later one.
            fetchIndex = index + count;
        }
        return count;
    }

    void unmap() {
        Linux.munmap(ring);
    }
}
