package dev.ferry.kvm.dirtyring;

import dev.ferry.api.DirtyTracker;
import dev.ferry.api.DirtyTrackerException;
import dev.ferry.api.MemorySection;
import dev.ferry.kvm.KvmAccelerator;
import dev.ferry.kvm.KvmDirtyRing;
import dev.ferry.kvm.KvmMemslot;
import dev.ferry.kvm.KvmMemslots;
import dev.ferry.kvm.KvmVcpu;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;

/**
 * The {@code kvm-dirtyring} tracker: KVM's per-vCPU dirty rings (QEMU's dirty ring support in
 * accel/kvm/kvm-all.c, seed 004). Where the bitmap tracker asks KVM for a slot's log on every
 * sync, here KVM pushes each page a vCPU dirties into that vCPU's ring as it happens, and the
 * tracker must keep the rings drained: a vCPU whose ring reaches its soft limit exits with
 * KVM_EXIT_DIRTY_RING_FULL and cannot run until userspace harvests and resets it.
 *
 * <h2>Who reaps</h2>
 * Every reap harvests all rings and resets them ({@link DirtyRings}); it runs under the slot
 * table's lock (QEMU's kvm_slots_lock), so slot ids in the entries mean what the table says.
 * <ul>
 *   <li>The reaper thread ({@code kvm-dirty-ring-reaper}, QEMU's kvm_dirty_ring_reaper_thread),
 *       while logging is on: every {@link #reapPeriodNanos()} (10 ms by default; QEMU sleeps a
 *       second, but rings fill faster than that here), and at once when a vCPU finds its ring
 *       half-way to the soft limit. A period of 0 runs no thread: the vCPUs and the syncs reap
 *       alone, as a single-threaded user of the rings would (the C probe it is benchmarked against).</li>
 *   <li>The vCPU thread, on its pacing and kick exits ({@link KvmAccelerator.DirtyRingReaper#vcpuExit}):
 *       one acquire load tells whether the ring holds half of its usable entries (then the reaper
 *       is woken) or three quarters (then the vCPU reaps itself before going back to the guest).
 *       "Usable" is the ring size less what KVM keeps in reserve below the soft limit: 64 entries
 *       plus the CPU's log buffer, taken as Intel PML's 512 (kvm_dirty_ring_get_rsvd_entries).
 *       The point is never to let a ring fill: on nested hosts a full ring has been seen to lose
 *       entries and to exit for ever with nothing to harvest.</li>
 *   <li>The vCPU thread on KVM_EXIT_DIRTY_RING_FULL: reap, then re-enter (QEMU's kvm_cpu_exec).
 *       If nothing came out of that vCPU's ring since its previous full exit, the ring lost
 *       entries: {@link DirtyTrackerException}, which stops that vCPU and, recorded, the next sync
 *       and so the migration.</li>
 *   <li>{@link #logSyncGlobal}: kick every vCPU out of guest mode and wait until each was out once
 *       (so entries still in CPU buffers reach the rings), then reap (QEMU's kvm_dirty_ring_flush).</li>
 *   <li>Memory map changes: {@link #regionDel} of a logging slot kicks and reaps before the slot
 *       goes; the accelerator then reaps again under the slot lock just before and just after
 *       deleting the slot, before its id can be reused ({@link KvmAccelerator.DirtyRingReaper#reap}).</li>
 * </ul>
 *
 * <h2>Global sync only</h2>
 * The rings are per vCPU, not per memory slot: an entry for any slot can be in any ring, so
 * collecting one section's pages costs a reap of every ring — a whole-VM sync. The tracker
 * therefore implements {@link #logSyncGlobal} and not {@link #logSync}: a per-section sync would
 * cost a full reap per section for nothing (QEMU's cover letter: "the dirty bit is collected
 * globally for all the vcpus at once", and memory.c gained log_sync_global for it).
 *
 * <h2>Listener order</h2>
 * {@link #priority()} is {@value #PRIORITY}, above the accelerator's {@code kvm-memslots} (10):
 * listeners hear regionDel in descending priority, so this tracker reaps before the slot is
 * deleted, and hears regionAdd after the slot exists.
 *
 * <h2>Failures</h2>
 * A reap that cannot vouch for what it reported (reset count mismatch, overflowing ring, entry
 * for an unknown slot, a vCPU that would not leave guest mode) records the failure; the reaper
 * thread and memory-map callbacks never throw it into their callers, but the next
 * {@link #logSyncGlobal} does, so the migration stops saying why. A later logGlobalStart whose
 * first reap succeeds clears it: a new migration sends every page at first anyway.
 */
public final class KvmDirtyRingTracker implements DirtyTracker {

    /** Memory listener priority: above kvm-memslots (10), so regionDel reaches us first. */
    public static final int PRIORITY = 20;
    /** Default period of the reaper thread. */
    public static final long DEFAULT_REAP_PERIOD_NANOS = TimeUnit.MILLISECONDS.toNanos(10);
    /** Entries KVM keeps below the ring's end at most: KVM_DIRTY_RING_RSVD_ENTRIES + Intel PML's buffer. */
    static final int KVM_RESERVED_ENTRIES = 64 + 512;

    private final KvmMemslots slots;
    private final DirtyRingIoctls ioctls;
    private final int ringEntries;
    private final long reapPeriodNanos;
    private final int softMark;
    private final int hardMark;
    private final SlotPageMarker marker;
    private final DirtyRings rings;
    private final KvmAccelerator.DirtyRingReaper hook = new Hook();
    private final AtomicLong syncs = new AtomicLong();
    private final AtomicLong syncNanos = new AtomicLong();
    private final AtomicLong softKicks = new AtomicLong();
    private final AtomicLong vcpuReaps = new AtomicLong();
    private final AtomicLong threadReaps = new AtomicLong();
    private final AtomicLong slotReaps = new AtomicLong();
    private final AtomicReference<DirtyTrackerException> failure = new AtomicReference<>();
    private volatile boolean logging;
    private volatile Reaper reaper;
    private volatile Runnable detach = () -> { };
    private boolean closed;

    /**
     * @param slots           the accelerator's slot table; its lock serializes reaps with slot changes
     * @param ioctls          the VM's rings, reset and kick
     * @param ringEntries     entries per vCPU ring
     * @param reapPeriodNanos period of the reaper thread, 0 for no reaper thread
     */
    public KvmDirtyRingTracker(KvmMemslots slots, DirtyRingIoctls ioctls, int ringEntries, long reapPeriodNanos) {
        if (ringEntries < 1 || Integer.bitCount(ringEntries) != 1) {
            throw new IllegalArgumentException("ring entries must be a power of two: " + ringEntries);
        }
        if (reapPeriodNanos < 0) {
            throw new IllegalArgumentException("reap period must not be negative: " + reapPeriodNanos);
        }
        this.slots = slots;
        this.ioctls = ioctls;
        this.ringEntries = ringEntries;
        this.reapPeriodNanos = reapPeriodNanos;
        int usable = Math.max(ringEntries / 4, ringEntries - KVM_RESERVED_ENTRIES);
        this.softMark = Math.max(1, usable / 2);
        this.hardMark = Math.max(softMark, usable * 3 / 4);
        this.marker = new SlotPageMarker(slots);
        this.rings = new DirtyRings(ioctls, slots.lock(), marker);
    }

    @Override
    public String name() {
        return KvmDirtyRingProvider.NAME;
    }

    @Override
    public int priority() {
        return PRIORITY;
    }

    /** @return the hooks the kvm accelerator calls: register with {@link KvmAccelerator#setDirtyRingReaper} */
    public KvmAccelerator.DirtyRingReaper hook() {
        return hook;
    }

    /** Sets what {@link #close()} runs to unregister {@link #hook()}. */
    void onClose(Runnable detach) {
        this.detach = detach;
    }

    /** @return entries per vCPU ring */
    public int ringEntries() {
        return ringEntries;
    }

    /** @return the reaper thread's period, 0 if there is no reaper thread */
    public long reapPeriodNanos() {
        return reapPeriodNanos;
    }

    /** @return pending entries at which a vCPU exit wakes the reaper */
    int softMark() {
        return softMark;
    }

    /** @return pending entries at which a vCPU exit reaps on the vCPU's thread */
    int hardMark() {
        return hardMark;
    }

    /** @return the rings' reap protocol (for tests) */
    DirtyRings rings() {
        return rings;
    }

    /** @return the failure recorded, if any */
    public java.util.Optional<DirtyTrackerException> failure() {
        return java.util.Optional.ofNullable(failure.get());
    }

    /** Records the first failure (lock-free: called with the slot lock held). */
    private void fail(DirtyTrackerException e) {
        failure.compareAndSet(null, e);
    }

    private void throwIfFailed() {
        DirtyTrackerException f = failure.get();
        if (f != null) {
            throw new DirtyTrackerException(f.getMessage(), f);
        }
    }

    // ---- logging

    @Override
    public void logGlobalStart() {
        synchronized (this) {
            ensureOpen();
            logging = true;
        }
        try {
            rings.reap(); // whatever is left from before belongs to no migration
            failure.set(null);
        } catch (DirtyTrackerException e) {
            fail(e);
        }
        synchronized (this) {
            if (reaper == null && logging && !closed && reapPeriodNanos > 0) {
                reaper = new Reaper();
                reaper.thread.start();
            }
        }
    }

    @Override
    public void logGlobalStop() {
        Reaper r;
        synchronized (this) {
            logging = false;
            r = reaper;
            reaper = null;
        }
        if (r != null) {
            r.stop();
        }
    }

    /**
     * Kicks every vCPU out of guest mode, waits until each was out once, then reaps every ring into
     * the RAM blocks (QEMU's kvm_dirty_ring_flush). With {@code lastStage} the vCPUs are stopped
     * already, so nobody needs a kick.
     *
     * @throws DirtyTrackerException if this or an earlier reap could not vouch for its pages
     */
    @Override
    public void logSyncGlobal(boolean lastStage) {
        throwIfFailed();
        long start = System.nanoTime();
        try {
            ioctls.kickAllAndWait();
            rings.reap();
        } catch (DirtyTrackerException e) {
            fail(e);
            throw e;
        }
        throwIfFailed();
        syncs.incrementAndGet();
        syncNanos.addAndGet(System.nanoTime() - start);
    }

    /**
     * A section goes away: if KVM logs its slot, flush the vCPUs and reap now, while the slot still
     * exists (the accelerator, at a lower priority, deletes it after us and reaps once more around
     * the deletion itself).
     */
    @Override
    public void regionDel(MemorySection section) {
        if (!logging || !section.isRam()) {
            return;
        }
        boolean logged;
        slots.lock().lock();
        try {
            logged = slots.find(section).map(KvmMemslot::logging).orElse(false);
        } finally {
            slots.lock().unlock();
        }
        if (!logged) {
            return;
        }
        try {
            ioctls.kickAllAndWait();
            rings.reap();
            slotReaps.incrementAndGet();
        } catch (DirtyTrackerException e) {
            fail(e); // never into the middle of a memory map change; the next sync reports it
        }
    }

    // ---- vCPU-side

    /**
     * KVM_EXIT_DIRTY_RING_FULL on a vCPU thread: reap, or throw when the ring had nothing to give.
     *
     * @throws DirtyTrackerException to stop the vCPU, which cannot run until its ring is reset
     */
    void onRingFull(KvmDirtyRing ring, int vcpu) {
        try {
            rings.ringFull(ring, vcpu);
        } catch (DirtyTrackerException e) {
            fail(e);
            throw e;
        }
    }

    /** A pacing or kick exit of a vCPU: wake the reaper, or reap here, if the ring is filling. */
    void onVcpuExit(KvmDirtyRing ring) {
        if (ring.size() != ringEntries) {
            return; // not a ring of ours
        }
        if (ring.pendingAtLeast(hardMark)) {
            try {
                rings.reap();
                vcpuReaps.incrementAndGet();
            } catch (DirtyTrackerException e) {
                fail(e);
            }
        } else if (ring.pendingAtLeast(softMark)) {
            Reaper r = reaper;
            if (r != null) {
                softKicks.incrementAndGet();
                r.wake();
            }
        }
    }

    /** The hooks the accelerator calls. */
    private final class Hook implements KvmAccelerator.DirtyRingReaper {

        @Override
        public void reap() {
            try {
                rings.reap();
                slotReaps.incrementAndGet();
            } catch (DirtyTrackerException e) {
                fail(e);
            }
        }

        @Override
        public void ringFull(KvmVcpu vcpu) {
            onRingFull(vcpu.dirtyRing(), vcpu.id());
        }

        @Override
        public void vcpuExit(KvmVcpu vcpu) {
            onVcpuExit(vcpu.dirtyRing());
        }
    }

    /** QEMU's kvm_dirty_ring_reaper_thread: reaps every period, or sooner when woken. */
    private final class Reaper implements Runnable {

        final Thread thread = Thread.ofPlatform().daemon().name("kvm-dirty-ring-reaper").unstarted(this);
        volatile boolean stop;

        @Override
        public void run() {
            while (!stop) {
                LockSupport.parkNanos(this, reapPeriodNanos);
                if (stop) {
                    break;
                }
                try {
                    rings.reap();
                    threadReaps.incrementAndGet();
                } catch (DirtyTrackerException e) {
                    fail(e);
                } catch (RuntimeException e) {
                    if (!stop) {
                        fail(new DirtyTrackerException("kvm-dirtyring: the reaper thread failed: " + e.getMessage(), e));
                    }
                }
            }
        }

        void wake() {
            LockSupport.unpark(thread);
        }

        void stop() {
            stop = true;
            LockSupport.unpark(thread);
            if (Thread.currentThread() != thread) {
                boolean interrupted = false;
                while (thread.isAlive()) {
                    try {
                        thread.join();
                    } catch (InterruptedException e) {
                        interrupted = true;
                    }
                }
                if (interrupted) {
                    Thread.currentThread().interrupt();
                }
            }
        }
    }

    @Override
    public Map<String, Long> statistics() {
        Map<String, Long> stats = new LinkedHashMap<>();
        stats.put("syncs", syncs.get());
        stats.put("sync-ns", syncNanos.get());
        stats.put("pages-reported", rings.entries());
        stats.put("reaps", rings.reaps());
        stats.put("reap-ns", rings.reapNanos());
        stats.put("reset-dirty-rings-ns", rings.resetNanos());
        stats.put("resets", rings.resets());
        stats.put("max-reap-entries", rings.maxBatch());
        stats.put("thread-reaps", threadReaps.get());
        stats.put("vcpu-reaps", vcpuReaps.get());
        stats.put("slot-reaps", slotReaps.get());
        stats.put("soft-kicks", softKicks.get());
        stats.put("full-exits", rings.fullExits());
        stats.put("ring-entries", (long) ringEntries);
        return stats;
    }

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException("tracker kvm-dirtyring is closed");
        }
    }

    /** Stops the reaper thread and unhooks from the accelerator. Call before the VM is closed. */
    @Override
    public void close() {
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
        }
        logGlobalStop();
        detach.run();
    }
}
