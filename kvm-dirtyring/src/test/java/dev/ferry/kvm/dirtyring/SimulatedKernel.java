package dev.ferry.kvm.dirtyring;

import dev.ferry.kvm.KvmDirtyRing;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A model of KVM's side of the dirty rings (virt/kvm/dirty_ring.c) over off-heap memory: per ring
 * a free-running dirty index (producer) and reset index; {@link #push} writes slot and offset, then
 * publishes flags = DIRTY with release, and refuses when the ring is full (dirty - reset = size);
 * {@link #softFull} is KVM's soft limit (size - reserved); {@link #resetDirtyRings} walks each
 * ring from its reset index over RESET-flagged entries (acquire), zeroes their flags (release) and
 * returns the count, as kvm_dirty_ring_reset does. Each ring has one producer thread, as each KVM
 * ring is filled by its own vCPU.
 */
final class SimulatedKernel implements DirtyRingIoctls, AutoCloseable {

    static final int DIRTY = 1;
    static final int RESET = 2;
    private static final VarHandle FLAGS = ValueLayout.JAVA_INT.varHandle();

    final Arena arena = Arena.ofShared();
    final List<Sim> sims = new ArrayList<>();
    final int reserved;
    final AtomicInteger kicks = new AtomicInteger();
    final AtomicInteger resetCalls = new AtomicInteger();
    /** Entries to leave out of the next reset's count: a kernel whose ring lost track of them. */
    volatile int shortBy;
    /** Extra entries to claim on the next reset (a kernel resetting what nobody harvested). */
    volatile int claimExtra;
    /** Stop each reset after this many entries (a pending signal), 0 for no limit. */
    volatile int resetLimitOnce;

    /** One ring and its kernel-side indexes. */
    static final class Sim {
        final MemorySegment memory;
        final KvmDirtyRing ring;
        final int size;
        volatile long dirtyIndex;
        volatile long resetIndex;

        Sim(MemorySegment memory) {
            this.memory = memory;
            this.ring = KvmDirtyRing.over(memory);
            this.size = ring.size();
        }

        long used() {
            return dirtyIndex - resetIndex;
        }
    }

    SimulatedKernel(int vcpus, int entries, int reserved) {
        this.reserved = reserved;
        for (int i = 0; i < vcpus; i++) {
            sims.add(new Sim(arena.allocate(16L * entries, 4096)));
        }
    }

    Sim sim(int i) {
        return sims.get(i);
    }

    /** kvm_dirty_ring_push, from the ring's producer thread. @return false if the ring is full */
    boolean push(int vcpu, int slot, long offset) {
        Sim s = sims.get(vcpu);
        if (s.used() >= s.size) {
            return false;
        }
        long at = (s.dirtyIndex & (s.size - 1)) * 16;
        s.memory.set(ValueLayout.JAVA_INT, at + 4, slot);
        s.memory.set(ValueLayout.JAVA_LONG, at + 8, offset);
        FLAGS.setRelease(s.memory, at, DIRTY);
        s.dirtyIndex = s.dirtyIndex + 1;
        return true;
    }

    /** Writes an entry as push does, ignoring the reset index: what a ring that overflows does. */
    void pushOverwriting(int vcpu, int slot, long offset) {
        Sim s = sims.get(vcpu);
        long at = (s.dirtyIndex & (s.size - 1)) * 16;
        s.memory.set(ValueLayout.JAVA_INT, at + 4, slot);
        s.memory.set(ValueLayout.JAVA_LONG, at + 8, offset);
        FLAGS.setRelease(s.memory, at, DIRTY);
        s.dirtyIndex = s.dirtyIndex + 1;
    }

    /** Writes slot and offset but not the flags: an entry being filled in. */
    void writeUnpublished(int vcpu, int slot, long offset) {
        Sim s = sims.get(vcpu);
        long at = (s.dirtyIndex & (s.size - 1)) * 16;
        s.memory.set(ValueLayout.JAVA_INT, at + 4, slot);
        s.memory.set(ValueLayout.JAVA_LONG, at + 8, offset);
    }

    /** Publishes the entry {@link #writeUnpublished} filled in. */
    void publish(int vcpu) {
        Sim s = sims.get(vcpu);
        long at = (s.dirtyIndex & (s.size - 1)) * 16;
        FLAGS.setRelease(s.memory, at, DIRTY);
        s.dirtyIndex = s.dirtyIndex + 1;
    }

    /** KVM's soft-full test: the vCPU exits with KVM_EXIT_DIRTY_RING_FULL at this point. */
    boolean softFull(int vcpu) {
        Sim s = sims.get(vcpu);
        return s.used() >= s.size - reserved;
    }

    @Override
    public List<KvmDirtyRing> rings() {
        List<KvmDirtyRing> out = new ArrayList<>();
        for (Sim s : sims) {
            out.add(s.ring);
        }
        return out;
    }

    @Override
    public synchronized int resetDirtyRings() {
        resetCalls.incrementAndGet();
        int limit = resetLimitOnce;
        resetLimitOnce = 0;
        int count = 0;
        for (Sim s : sims) {
            while (limit == 0 || count < limit) {
                long at = (s.resetIndex & (s.size - 1)) * 16;
                if (((int) FLAGS.getAcquire(s.memory, at) & RESET) == 0) {
                    break;
                }
                FLAGS.setRelease(s.memory, at, 0);
                s.resetIndex = s.resetIndex + 1;
                count++;
            }
        }
        int reported = count - shortBy + claimExtra;
        shortBy = 0;
        claimExtra = 0;
        return reported;
    }

    @Override
    public void kickAllAndWait() {
        kicks.incrementAndGet();
    }

    @Override
    public void close() {
        arena.close();
    }
}
