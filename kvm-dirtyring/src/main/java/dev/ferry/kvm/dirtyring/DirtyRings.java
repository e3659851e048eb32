package dev.ferry.kvm.dirtyring;

import dev.ferry.api.DirtyTrackerException;
import dev.ferry.kvm.KvmDirtyRing;

import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantLock;

/**
 * One VM's dirty rings and the reap protocol (QEMU's kvm_dirty_ring_reap_locked and
 * kvm_dirty_ring_reap_one, accel/kvm/kvm-all.c; the kernel side is virt/kvm/dirty_ring.c).
 *
 * <h2>Reap</h2>
 * Under the lock (the slot table's, so slot ids in entries cannot change meaning meanwhile), every
 * ring is harvested: from its fetch index, each entry whose flags read with acquire as DIRTY is
 * handed to the {@link GfnSink} and then flagged RESET with release, until the first entry that is
 * not DIRTY ({@link KvmDirtyRing#harvest}). The sink is flushed, so the pages are marked before
 * they are write-protected again, then KVM_RESET_DIRTY_RINGS frees the entries.
 *
 * <h2>Checks</h2>
 * A ring that loses entries loses dirty pages silently, so every reap checks what it can:
 * <ul>
 *   <li>The reset count. The kernel resets, per ring, the consecutive RESET-flagged entries from
 *       its reset index and returns how many it reset in all. Everything harvested since the last
 *       reset must come back: QEMU asserts the same ({@code assert(ret == total)}). Recent kernels
 *       stop a reset early when a signal is pending, so a short count is retried a few times
 *       before it counts as a mismatch; more than harvested is a mismatch at once. A mismatch
 *       means the kernel's view of a ring is not ours (typically: a full ring wrapped over an
 *       entry), so it is a {@link DirtyTrackerException}.</li>
 *   <li>A ring found completely full: KVM stops a vCPU at its soft limit, leaving reserved
 *       entries for what is already in flight; a ring with every entry dirty went past that and
 *       the kernel may have overwritten entries (kvm_dirty_ring_push only warns).</li>
 *   <li>{@link #ringFull}: a KVM_EXIT_DIRTY_RING_FULL after which nothing came out of that ring
 *       since its previous full exit. The kernel counts harvested-but-not-reset entries as used,
 *       so a full ring always yields entries unless it lost them; without this check the vCPU
 *       would exit for ever with nothing to harvest (seen on nested hosts, platform-facts.md).</li>
 * </ul>
 *
 * <p>Thread safety: every method takes the lock; harvests of one ring are also serialized by the
 * ring itself.
 */
public final class DirtyRings {

    /** Reset calls tried for one reap before a short count is a mismatch. */
    static final int RESET_ATTEMPTS = 4;

    private final DirtyRingIoctls ioctls;
    private final ReentrantLock lock;
    private final GfnSink sink;
    /** Per ring: {@link KvmDirtyRing#harvested()} when its last full exit was handled. Guarded by the lock. */
    private final Map<KvmDirtyRing, Long> atLastFull = new IdentityHashMap<>();
    /** Entries flagged RESET that KVM_RESET_DIRTY_RINGS has not reset yet. Guarded by the lock. */
    private long pendingReset;
    private final AtomicLong reaps = new AtomicLong();
    private final AtomicLong entries = new AtomicLong();
    private final AtomicLong resets = new AtomicLong();
    private final AtomicLong reapNanos = new AtomicLong();
    /** The kernel's share of reapNanos: KVM_RESET_DIRTY_RINGS alone. */
    private final AtomicLong resetNanos = new AtomicLong();
    private final AtomicLong fullExits = new AtomicLong();
    private final AtomicLong maxBatch = new AtomicLong();

    /**
     * @param ioctls the VM's rings and reset ioctl
     * @param lock   the lock every reap holds: the slot table's, so entries are attributed to the
     *               slots they were pushed for
     * @param sink   where harvested entries go
     */
    public DirtyRings(DirtyRingIoctls ioctls, ReentrantLock lock, GfnSink sink) {
        this.ioctls = ioctls;
        this.lock = lock;
        this.sink = sink;
    }

    /**
     * Harvests every ring into the sink, then resets the rings and checks the count.
     *
     * @return the number of entries harvested
     * @throws DirtyTrackerException if the reset count does not match, a ring was found overflowing,
     *                               or the sink could not attribute an entry
     */
    public long reap() {
        lock.lock();
        try {
            long start = System.nanoTime();
            List<KvmDirtyRing> rings = ioctls.rings();
            long total = 0;
            int overflowed = -1;
            try {
                for (int i = 0; i < rings.size(); i++) {
                    KvmDirtyRing ring = rings.get(i);
                    int n = ring.harvest(sink);
                    total += n;
                    if (n == ring.size() && overflowed < 0) {
                        overflowed = i;
                    }
                }
            } finally {
                // Entries flagged RESET are owed a reset even if the sink failed on a later one.
                pendingReset += total;
                entries.addAndGet(total);
                sink.flush();
            }
            if (pendingReset > 0) {
                reset();
            }
            reaps.incrementAndGet();
            reapNanos.addAndGet(System.nanoTime() - start);
            maxBatch.accumulateAndGet(total, Math::max);
            if (overflowed >= 0) {
                throw new DirtyTrackerException("kvm-dirtyring: the dirty ring of vCPU " + overflowed + " was completely "
                        + "full (" + rings.get(overflowed).size() + " entries): KVM went past its soft limit and may "
                        + "have overwritten entries, so dirty pages may be missing; use a larger dirty-ring-size");
            }
            return total;
        } finally {
            lock.unlock();
        }
    }

    private void reset() {
        long harvested = pendingReset;
        for (int attempt = 0; attempt < RESET_ATTEMPTS && pendingReset > 0; attempt++) {
            long start = System.nanoTime();
            int n = ioctls.resetDirtyRings();
            resetNanos.addAndGet(System.nanoTime() - start);
            resets.incrementAndGet();
            if (n < 0 || n > pendingReset) {
                throw mismatch(harvested, harvested - pendingReset + n);
            }
            pendingReset -= n;
        }
        if (pendingReset != 0) {
            throw mismatch(harvested, harvested - pendingReset);
        }
    }

    private static DirtyTrackerException mismatch(long harvested, long reset) {
        return new DirtyTrackerException("kvm-dirtyring: harvested " + harvested + " dirty ring entries but "
                + "KVM_RESET_DIRTY_RINGS reset " + reset + "; the kernel's rings and the tracker disagree (a ring "
                + "that overflowed wraps over entries), so dirty pages may be missing");
    }

    /**
     * A vCPU exited with KVM_EXIT_DIRTY_RING_FULL (QEMU's kvm_cpu_exec reaps, then re-enters):
     * reaps every ring, then checks that the full ring gave something since its previous full exit.
     *
     * @param ring  the vCPU's ring
     * @param vcpu  the vCPU's id, for messages
     * @return entries harvested by this reap, from all rings
     * @throws DirtyTrackerException if nothing could be harvested from the ring that KVM says is full
     */
    public long ringFull(KvmDirtyRing ring, int vcpu) {
        lock.lock();
        try {
            fullExits.incrementAndGet();
            long n = reap();
            long now = ring.harvested();
            Long before = atLastFull.put(ring, now);
            if (now == (before == null ? 0 : before)) {
                throw new DirtyTrackerException("kvm-dirtyring: vCPU " + vcpu + " exited with KVM_EXIT_DIRTY_RING_FULL "
                        + "but its ring (" + ring.size() + " entries) held nothing to harvest" + (before == null ? ""
                        : " since its previous full exit") + ": the ring lost entries, so dirty pages are missing "
                        + "and the vCPU would exit for ever; reap more often or use a larger dirty-ring-size");
            }
            return n;
        } finally {
            lock.unlock();
        }
    }

    /** @return the kernel calls */
    DirtyRingIoctls ioctls() {
        return ioctls;
    }

    /** @return reaps done */
    public long reaps() {
        return reaps.get();
    }

    /** @return entries harvested in all */
    public long entries() {
        return entries.get();
    }

    /** @return KVM_RESET_DIRTY_RINGS calls made */
    public long resets() {
        return resets.get();
    }

    /** @return nanoseconds spent reaping */
    public long reapNanos() {
        return reapNanos.get();
    }

    /** @return nanoseconds spent in KVM_RESET_DIRTY_RINGS */
    public long resetNanos() {
        return resetNanos.get();
    }

    /** @return KVM_EXIT_DIRTY_RING_FULL exits handled */
    public long fullExits() {
        return fullExits.get();
    }

    /** @return the most entries one reap harvested */
    public long maxBatch() {
        return maxBatch.get();
    }
}
