package dev.ferry.kvm;

import dev.ferry.machine.VcpuControl;
import dev.ferry.machine.VcpuLoop;
import dev.ferry.memory.AddressSpace;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.util.concurrent.locks.LockSupport;

/**
 * One KVM vCPU's run loop (QEMU's kvm_cpu_exec): KVM_RUN until an exit, handle the exit, repeat.
 *
 * <ul>
 *   <li>KVM_EXIT_IO, OUT to {@link #PACING_PORT}: the guest program reports its page-write count
 *       every few pages. The loop hands the pages written since the previous report to
 *       {@link VcpuControl#checkpoint}, where the host sleeps the vCPU for pacing and throttling and
 *       parks it while the machine is paused; the vCPU stays out of guest mode meanwhile.</li>
 *   <li>KVM_EXIT_INTR: a {@link #kick()} (pause, shutdown). The count comes from r15.</li>
 *   <li>KVM_EXIT_MMIO: an access where KVM has no slot (an I/O region, RAM whose slot is being
 *       replaced, or nothing): performed through the system address space, which marks RAM
 *       dirty; unassigned addresses read as 0 and ignore writes, as QEMU's unassigned memory.</li>
 *   <li>KVM_EXIT_DIRTY_RING_FULL: the dirty-ring reaper the tracker registered runs, then the
 *       vCPU goes on; without one the loop fails rather than lose dirty pages. The reaper also
 *       sees every pacing and kick exit ({@link KvmAccelerator.DirtyRingReaper#vcpuExit}), to
 *       reap before the ring fills.</li>
 *   <li>Anything else (HLT, SHUTDOWN, FAIL_ENTRY, INTERNAL_ERROR, other ports): the loop throws,
 *       naming the exit; the machine reports it as the vCPU's failure.</li>
 * </ul>
 *
 * <p>The whole vCPU state is struct kvm_regs plus struct kvm_sregs (the guest runs without
 * interrupts, FPU use or MSRs of its own); {@link #saveState()} completes a pending I/O first so
 * the registers are final, as Documentation/virt/kvm/api.rst asks before migration.
 */
public final class KvmVcpuLoop implements VcpuLoop {

    /** The port the guest program reports progress to (an OUT of the low 32 bits of its write count). */
    public static final int PACING_PORT = 0x510;
    private static final int STATE_MAGIC = 0x4B564D53; // "KVMS"
    private static final int STATE_VERSION = 1;
    /** Bytes of {@link #saveState()}: magic, version, struct kvm_regs, struct kvm_sregs. */
    public static final int STATE_BYTES = 8 + KvmRegs.BYTES + KvmSregs.BYTES;

    private final KvmAccelerator accelerator;
    private final int index;
    private final KvmVcpu vcpu;
    private final boolean idle;
    private final AddressSpace addressSpace;
    /** Where the guest program counts a write it made. */
    private final long commitRip;
    /** The guest's page-write count (r15) as last accounted to the control, vCPU thread only. */
    private long accounted;

    KvmVcpuLoop(KvmAccelerator accelerator, int index, KvmVcpu vcpu, boolean idle, AddressSpace addressSpace,
                long commitRip) {
        this.commitRip = commitRip;
        this.accelerator = accelerator;
        this.index = index;
        this.vcpu = vcpu;
        this.idle = idle;
        this.addressSpace = addressSpace;
    }

    /** @return the KVM vCPU */
    public KvmVcpu vcpu() {
        return vcpu;
    }

    @Override
    public void run(VcpuControl control) {
        if (idle) {
            // No guest program: nothing would run but HLT. Stay at checkpoints so pause is prompt.
            do {
                LockSupport.parkNanos(1_000_000L);
            } while (control.checkpoint(0));
            return;
        }
        accounted = GuestCode.pagesWritten(vcpu.getRegs(), commitRip);
        while (true) {
            int reason = vcpu.run();
            switch (reason) {
                case KvmIoctls.KVM_EXIT_IO -> {
                    if (vcpu.ioPort() != PACING_PORT || vcpu.ioDirection() != KvmIoctls.KVM_EXIT_IO_OUT
                            || vcpu.ioSize() != 4 || vcpu.ioCount() != 1) {
                        throw unexpected();
                    }
                    // EAX holds the low 32 bits of the count; fewer than 2^32 pages pass between reports.
                    long delta = (vcpu.ioValue() - accounted) & 0xFFFF_FFFFL;
                    accounted += delta;
                    ringCheck();
                    if (!control.checkpoint(delta)) {
                        return;
                    }
                }
                case KvmIoctls.KVM_EXIT_INTR -> {
                    long written = GuestCode.pagesWritten(vcpu.getRegs(), commitRip);
                    long delta = written - accounted;
                    accounted = written;
                    ringCheck();
                    if (!control.checkpoint(delta)) {
                        return;
                    }
                }
                case KvmIoctls.KVM_EXIT_MMIO -> mmio();
                case KvmIoctls.KVM_EXIT_DIRTY_RING_FULL -> {
                    KvmAccelerator.DirtyRingReaper reaper = accelerator.dirtyRingReaper();
                    if (reaper == null) {
                        throw new IllegalStateException("vCPU " + index + ": KVM_EXIT_DIRTY_RING_FULL and no tracker "
                                + "reaps the dirty ring; dirty pages would be lost");
                    }
                    reaper.ringFull(vcpu);
                }
                default -> throw unexpected();
            }
        }
    }

    /** Lets the dirty-ring reaper look at this vCPU's ring while the vCPU is out of guest mode. */
    private void ringCheck() {
        KvmAccelerator.DirtyRingReaper reaper = accelerator.dirtyRingReaper();
        if (reaper != null) {
            reaper.vcpuExit(vcpu);
        }
    }

    private IllegalStateException unexpected() {
        String regs;
        try {
            regs = ", rip " + Long.toHexString(vcpu.getRegs().rip());
        } catch (RuntimeException e) {
            regs = "";
        }
        return new IllegalStateException("vCPU " + index + " stopped: unexpected " + vcpu.describeExit() + regs
                + " (" + KvmIoctls.exitName(vcpu.exitReason()) + ")");
    }

    /** Performs an MMIO exit's access through the address space (kvm_cpu_exec's KVM_EXIT_MMIO case). */
    private void mmio() {
        long address = vcpu.mmioPhysAddr();
        MemorySegment data = vcpu.mmioData();
        if (vcpu.mmioIsWrite()) {
            try {
                addressSpace.write(address, data);
            } catch (IllegalArgumentException unassigned) {
                // Unmapped or read-only: the write goes nowhere, as with QEMU's unassigned memory.
            }
        } else {
            data.fill((byte) 0);
            try {
                addressSpace.read(address, data);
            } catch (IllegalArgumentException unassigned) {
                data.fill((byte) 0);
            }
        }
    }

    @Override
    public void kick() {
        try {
            vcpu.kick();
        } catch (IllegalStateException closed) {
            // The vCPU is closed: nothing runs that could need a kick.
        }
    }

    /**
     * Saves struct kvm_regs and struct kvm_sregs. Call with the vCPU stopped (machine paused).
     */
    @Override
    public int stateBytes() {
        return STATE_BYTES;
    }

    @Override
    public byte[] saveState() {
        vcpu.completePendingIo();
        byte[] regs = vcpu.getRegs().toBytes();
        byte[] sregs = vcpu.getSregs().toBytes();
        return ByteBuffer.allocate(STATE_BYTES).putInt(STATE_MAGIC).putInt(STATE_VERSION).put(regs).put(sregs).array();
    }

    /** Restores state from {@link #saveState()}, before the vCPU runs. */
    @Override
    public void loadState(byte[] state) {
        parseState(index, state);
        ByteBuffer b = ByteBuffer.wrap(state, 8, state.length - 8);
        byte[] regs = new byte[KvmRegs.BYTES];
        byte[] sregs = new byte[KvmSregs.BYTES];
        b.get(regs).get(sregs);
        // Special registers first: they switch modes, and the general registers are read in the new one.
        vcpu.setSregs(KvmSregs.fromBytes(sregs));
        vcpu.setRegs(KvmRegs.fromBytes(regs));
    }

    /**
     * Checks a saved state's framing.
     *
     * @throws IllegalArgumentException if it is not a kvm vCPU state of this version
     */
    static void parseState(int index, byte[] state) {
        if (state.length != STATE_BYTES) {
            throw new IllegalArgumentException("kvm vCPU " + index + ": state of " + state.length + " bytes, expected "
                    + STATE_BYTES + " (was it saved by another accelerator?)");
        }
        ByteBuffer b = ByteBuffer.wrap(state);
        int magic = b.getInt();
        int version = b.getInt();
        if (magic != STATE_MAGIC) {
            throw new IllegalArgumentException("kvm vCPU " + index + ": state does not come from a kvm vCPU");
        }
        if (version != STATE_VERSION) {
            throw new IllegalArgumentException("kvm vCPU " + index + ": state version " + version + ", this Ferry reads "
                    + STATE_VERSION);
        }
    }
}
