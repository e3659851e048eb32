package dev.ferry.kvm.dirtyring;

import dev.ferry.api.DirtyTrackerException;
import dev.ferry.kvm.KvmDirtyRing;
import dev.ferry.kvm.KvmVcpu;
import dev.ferry.kvm.KvmVm;
import dev.ferry.memory.linux.Errno;
import dev.ferry.memory.linux.LinuxException;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;

/**
 * What the ring tracker asks of the kernel, so that the harvest protocol can be checked against a
 * simulated kernel where there is no KVM. In production these are a {@link KvmVm}'s.
 */
public interface DirtyRingIoctls {

    /** How long a vCPU may stay in KVM_RUN after being kicked before a flush gives up. */
    long KICK_TIMEOUT_NANOS = TimeUnit.SECONDS.toNanos(5);
    /** How often a vCPU that has not left KVM_RUN yet is kicked again. */
    long REKICK_NANOS = TimeUnit.MILLISECONDS.toNanos(2);

    /** @return the dirty rings of the vCPUs that exist now, in vCPU creation order */
    List<KvmDirtyRing> rings();

    /**
     * KVM_RESET_DIRTY_RINGS: the kernel walks each ring from its reset index over the entries
     * userspace flagged RESET, re-protects their pages and frees them.
     *
     * @return the number of entries reset (0 if the call was interrupted before it reset any)
     */
    int resetDirtyRings();

    /**
     * Makes every vCPU leave guest mode at least once after this call began, and returns once they
     * have, so that dirty pages still in CPU buffers (Intel PML) reach the rings. QEMU's
     * kvm_cpu_synchronize_kick_all, which kvm_dirty_ring_flush calls before it reaps.
     *
     * @throws DirtyTrackerException if a vCPU does not leave KVM_RUN in time
     */
    void kickAllAndWait();

    /** @return the ioctls of a real VM whose vCPUs were created with dirty rings */
    static DirtyRingIoctls of(KvmVm vm) {
        return new DirtyRingIoctls() {
            @Override
            public List<KvmDirtyRing> rings() {
                List<KvmVcpu> vcpus = vm.vcpus();
                List<KvmDirtyRing> rings = new ArrayList<>(vcpus.size());
                for (KvmVcpu v : vcpus) {
                    rings.add(v.dirtyRing());
                }
                return rings;
            }

            @Override
            public int resetDirtyRings() {
                try {
                    return vm.resetDirtyRings();
                } catch (LinuxException e) {
                    if (e.errno() == Errno.EINTR) {
                        return 0; // a signal arrived first; the caller calls again for what is left
                    }
                    throw e;
                }
            }

            @Override
            public void kickAllAndWait() {
                kickAndWait(vm.vcpus());
            }
        };
    }

    /**
     * Kicks the vCPUs that are inside KVM_RUN and waits until each has come out once (or was not
     * inside to begin with). A vCPU outside KVM_RUN is not kicked: everything it dirtied is in its
     * ring already, and a needless kick would only cost it an exit.
     */
    static void kickAndWait(List<KvmVcpu> vcpus) {
        int n = vcpus.size();
        long[] seen = new long[n];
        boolean[] waiting = new boolean[n];
        long[] kicked = new long[n];
        int left = 0;
        for (int i = 0; i < n; i++) {
            KvmVcpu v = vcpus.get(i);
            seen[i] = v.runsCompleted(); // before inKvmRun: a run that ends after this read counts
            if (v.inKvmRun()) {
                waiting[i] = kick(v);
                kicked[i] = System.nanoTime();
                left += waiting[i] ? 1 : 0;
            }
        }
        long start = System.nanoTime();
        while (left > 0) {
            for (int i = 0; i < n; i++) {
                if (!waiting[i]) {
                    continue;
                }
                KvmVcpu v = vcpus.get(i);
                if (!v.inKvmRun() || v.runsCompleted() != seen[i]) {
                    waiting[i] = false;
                    left--;
                } else if (System.nanoTime() - kicked[i] > REKICK_NANOS) {
                    if (!kick(v)) {
                        waiting[i] = false;
                        left--;
                    }
                    kicked[i] = System.nanoTime();
                }
            }
            if (left > 0) {
                if (System.nanoTime() - start > KICK_TIMEOUT_NANOS) {
                    List<Integer> stuck = new ArrayList<>();
                    for (int i = 0; i < n; i++) {
                        if (waiting[i]) {
                            stuck.add(vcpus.get(i).id());
                        }
                    }
                    throw new DirtyTrackerException("kvm-dirtyring: vCPU " + stuck + " stayed in KVM_RUN for "
                            + TimeUnit.NANOSECONDS.toSeconds(KICK_TIMEOUT_NANOS) + " s despite kicks, so dirty "
                            + "pages still in its CPU buffers cannot be flushed to its ring");
                }
                LockSupport.parkNanos(20_000);
            }
        }
    }

    /** @return false if the vCPU is closed (nothing runs on it any more) */
    private static boolean kick(KvmVcpu v) {
        try {
            v.kick();
            return true;
        } catch (IllegalStateException closed) {
            return false;
        }
    }
}
