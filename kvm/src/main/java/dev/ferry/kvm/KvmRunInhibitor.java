package dev.ferry.kvm;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import java.util.function.Supplier;

/**
 * Keeps a VM's vCPUs out of KVM_RUN while its memory slots are replaced (QEMU's
 * accel_ioctl_inhibit_begin/end, which kvm_region_commit takes when a commit removes slots).
 *
 * <p>Replacing a slot is two ioctls, delete then create: in between, the guest-physical range
 * has no slot. A vCPU that touches it then gets KVM_EXIT_MMIO for a data access, but an
 * instruction fetch or a page-table walk there cannot be emulated: the guest takes a fault it
 * has no handler for, and KVM reports KVM_EXIT_SHUTDOWN (seen in kvm-in-tcg when a one-page I/O
 * hole was removed from under a running guest whose code and page tables lay in the same slot).
 *
 * <p>Every KVM_RUN holds the read side for as long as it runs; {@link #begin} kicks the vCPUs out
 * until it gets the write side, so no vCPU is in guest mode until {@link #end}. The lock is
 * fair, so a waiting inhibitor is not starved by vCPUs re-entering.
 */
final class KvmRunInhibitor {

    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock(true);
    private final Supplier<? extends Iterable<KvmVcpu>> vcpus;

    /** @param vcpus the VM's vCPUs now, to kick */
    KvmRunInhibitor(Supplier<? extends Iterable<KvmVcpu>> vcpus) {
        this.vcpus = vcpus;
    }

    /** A vCPU thread is about to call KVM_RUN; waits while an inhibitor holds the VM. */
    void runBegin() {
        lock.readLock().lock();
    }

    /** KVM_RUN returned. */
    void runEnd() {
        lock.readLock().unlock();
    }

    /**
     * Kicks every vCPU out of KVM_RUN and keeps them out until {@link #end}. A thread that holds
     * the VM inhibited already (a second deletion in the same pass) just keeps holding it.
     */
    void begin() {
        ReentrantReadWriteLock.WriteLock w = lock.writeLock();
        if (w.isHeldByCurrentThread()) {
            return;
        }
        boolean interrupted = false;
        while (true) {
            for (KvmVcpu v : vcpus.get()) {
                if (v.inKvmRun()) {
                    v.kick();
                }
            }
            try {
                if (w.tryLock(1, TimeUnit.MILLISECONDS)) {
                    break;
                }
            } catch (InterruptedException e) {
                interrupted = true; // slots must be updated all the same; keep the interrupt for later
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }

    /** Lets the vCPUs run again, if this thread held them out (a pass that deleted no slot did not). */
    void end() {
        if (lock.isWriteLockedByCurrentThread()) {
            lock.writeLock().unlock();
        }
    }
}
