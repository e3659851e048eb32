package dev.ferry.kvm;

import static java.lang.foreign.MemoryLayout.PathElement.groupElement;

import dev.ferry.memory.linux.Errno;
import dev.ferry.memory.linux.Linux;
import dev.ferry.memory.linux.LinuxException;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;

/**
 * A KVM vCPU (a vCPU fd) and its mapped struct kvm_run.
 *
 * <p>{@link #run()} enters the guest on the calling thread until the next exit. Another thread
 * stops it with {@link #kick()}, the way QEMU's kvm_cpu_kick does: set kvm_run.immediate_exit,
 * then signal the vCPU thread so a KVM_RUN already in guest mode returns with EINTR. The signal
 * is SIGPIPE: HotSpot installs a handler for it that does nothing (it ignores SIGPIPE so writes to
 * closed sockets fail with EPIPE instead of killing the process), so it interrupts KVM_RUN and is
 * otherwise harmless; SIGUSR2 (HotSpot's suspend/resume signal), SIGQUIT, SIGINT, SIGTERM and
 * SIGHUP all mean something to the JVM, and SIGUSR1 has no handler, so sending it would kill the
 * process. The run thread unblocks SIGPIPE for itself, and kicking refuses to signal if SIGPIPE has
 * no handler in this process.
 *
 * <p>Registers read right after an I/O or MMIO exit are not final until KVM_RUN completes the
 * access (Documentation/virt/kvm/api.rst, KVM_RUN): call {@link #completePendingIo()} before
 * saving the vCPU for migration.
 */
public final class KvmVcpu implements AutoCloseable {

    private static final VarHandle IMMEDIATE_EXIT = ValueLayout.JAVA_BYTE.varHandle();
    private static final long IMMEDIATE_EXIT_OFFSET = KvmStructs.KVM_RUN.byteOffset(groupElement("immediate_exit"));
    private static final long EXIT_REASON_OFFSET = KvmStructs.KVM_RUN.byteOffset(groupElement("exit_reason"));
    private static final long EXIT_OFFSET = KvmStructs.KVM_RUN.byteOffset(groupElement("exit"));
    private static final ThreadLocal<Boolean> KICKABLE_THREAD = ThreadLocal.withInitial(() -> false);

    private final KvmVm vm;
    private final int id;
    private final int fd;
    private final MemorySegment run;
    private final KvmDirtyRing dirtyRing;
    /** The thread id inside KVM_RUN, 0 when none: the target of a kick. */
    private volatile int runnerTid;
    /** KVM_RUN calls that returned, for {@link #runsCompleted()}. */
    private volatile long runsCompleted;
    private boolean ioPending;
    private volatile boolean closed;

    KvmVcpu(KvmVm vm, int id, int fd, int mmapSize, int dirtyRingBytes) {
        this.vm = vm;
        this.id = id;
        this.fd = fd;
        this.run = Linux.mmap(mmapSize, Linux.PROT_READ | Linux.PROT_WRITE, Linux.MAP_SHARED, fd, 0);
        KvmDirtyRing ring = null;
        if (dirtyRingBytes > 0) {
            try {
                ring = new KvmDirtyRing(Linux.mmap(dirtyRingBytes, Linux.PROT_READ | Linux.PROT_WRITE,
                        Linux.MAP_SHARED, fd, (long) KvmIoctls.KVM_DIRTY_LOG_PAGE_OFFSET * KvmVm.PAGE_SIZE));
            } catch (RuntimeException e) {
                Linux.munmap(run);
                throw e;
            }
        }
        this.dirtyRing = ring;
    }

    /** @return the vCPU id given to KVM_CREATE_VCPU */
    public int id() {
        return id;
    }

    /**
     * Runs the guest until it exits (KVM_RUN). A kick makes it return {@link KvmIoctls#KVM_EXIT_INTR}
     * (the kernel answers EINTR); the caller then looks at why it was kicked.
     *
     * @return the exit reason, a {@code KvmIoctls.KVM_EXIT_*} value
     */
    public int run() {
        ensureOpen();
        if (!KICKABLE_THREAD.get()) {
            LinuxThreads.unblock(LinuxThreads.SIGPIPE);
            KICKABLE_THREAD.set(true);
        }
        KvmRunInhibitor inhibitor = vm.runInhibitor();
        inhibitor.runBegin();
        int r;
        try {
            runnerTid = LinuxThreads.gettid();
            try {
                r = Linux.ioctlOrErrno(fd, KvmIoctls.KVM_RUN, 0L);
            } finally {
                runsCompleted++; // only this thread writes it
                runnerTid = 0;
            }
        } finally {
            inhibitor.runEnd();
        }
        ioPending = false; // KVM_RUN completes a pending I/O before anything else
        if (r == -Errno.EINTR) {
            // A kick: immediate_exit has done its job. Whoever kicked set its own request before
            // immediate_exit, so clearing it here cannot lose a request the caller checks next.
            IMMEDIATE_EXIT.setVolatile(run, IMMEDIATE_EXIT_OFFSET, (byte) 0);
            return KvmIoctls.KVM_EXIT_INTR;
        }
        if (r < 0) {
            throw new LinuxException("ioctl(KVM_RUN) on vCPU " + id, -r);
        }
        int reason = exitReason();
        ioPending = reason == KvmIoctls.KVM_EXIT_IO || reason == KvmIoctls.KVM_EXIT_MMIO;
        return reason;
    }

    /**
     * Makes the vCPU leave guest mode soon: its current or next {@link #run()} returns
     * {@link KvmIoctls#KVM_EXIT_INTR}. Callable from any thread; set the reason for the kick
     * (in a volatile field) before calling it.
     */
    public void kick() {
        ensureOpen();
        IMMEDIATE_EXIT.setVolatile(run, IMMEDIATE_EXIT_OFFSET, (byte) 1);
        int tid = runnerTid;
        if (tid != 0) {
            if (!KickSignal.HANDLED) {
                throw new IllegalStateException("cannot kick vCPU " + id + " out of KVM_RUN: SIGPIPE has no "
                        + "handler in this process (HotSpot installs one unless something replaced it), so it "
                        + "would be ignored or kill the process");
            }
            LinuxThreads.tgkill(tid, LinuxThreads.SIGPIPE); // false: the thread is gone, nothing to interrupt
        }
    }

    /**
     * @return whether a thread is inside KVM_RUN on this vCPU right now (it may be in guest mode).
     *         False means everything the guest did so far has left the CPU's buffers (PML) and
     *         reached the kernel's logs and dirty rings: KVM flushes them on every VM exit.
     */
    public boolean inKvmRun() {
        return runnerTid != 0;
    }

    /**
     * @return the number of KVM_RUN calls that have returned. With {@link #inKvmRun()} it tells
     *         whether the vCPU left guest mode since some earlier moment (QEMU's
     *         kvm_cpu_synchronize_kick_all waits for that with run_on_cpu).
     */
    public long runsCompleted() {
        return runsCompleted;
    }

    /** Whether SIGPIPE has a handler, checked once. */
    private static final class KickSignal {
        static final boolean HANDLED = LinuxThreads.hasHandler(LinuxThreads.SIGPIPE);
    }

    /**
     * If the last exit was an I/O or MMIO exit, re-enters KVM_RUN with immediate_exit set so the
     * kernel completes the access and returns without running guest code; the registers are then
     * consistent (as api.rst asks before live migration). For an IN or MMIO read, the data must
     * have been filled in first.
     */
    public void completePendingIo() {
        ensureOpen();
        if (!ioPending) {
            return;
        }
        IMMEDIATE_EXIT.setVolatile(run, IMMEDIATE_EXIT_OFFSET, (byte) 1);
        int r = Linux.ioctlOrErrno(fd, KvmIoctls.KVM_RUN, 0L);
        IMMEDIATE_EXIT.setVolatile(run, IMMEDIATE_EXIT_OFFSET, (byte) 0);
        if (r != -Errno.EINTR) {
            throw new IllegalStateException("KVM_RUN with immediate_exit set returned " + r + " on vCPU " + id
                    + " (expected EINTR)");
        }
        ioPending = false;
    }

    /** @return kvm_run.exit_reason of the last exit */
    public int exitReason() {
        return run.get(ValueLayout.JAVA_INT, EXIT_REASON_OFFSET);
    }

    /** @return {@link KvmIoctls#KVM_EXIT_IO_IN} or {@link KvmIoctls#KVM_EXIT_IO_OUT} (KVM_EXIT_IO) */
    public int ioDirection() {
        return Byte.toUnsignedInt(run.get(ValueLayout.JAVA_BYTE, EXIT_OFFSET));
    }

    /** @return bytes per access: 1, 2 or 4 (KVM_EXIT_IO) */
    public int ioSize() {
        return Byte.toUnsignedInt(run.get(ValueLayout.JAVA_BYTE, EXIT_OFFSET + 1));
    }

    /** @return the I/O port (KVM_EXIT_IO) */
    public int ioPort() {
        return Short.toUnsignedInt(run.get(ValueLayout.JAVA_SHORT, EXIT_OFFSET + 2));
    }

    /** @return the number of accesses, more than 1 for a REP string instruction (KVM_EXIT_IO) */
    public int ioCount() {
        return run.get(ValueLayout.JAVA_INT, EXIT_OFFSET + 4);
    }

    /** @return the data of all {@link #ioCount()} accesses, inside the kvm_run mapping (KVM_EXIT_IO) */
    public MemorySegment ioData() {
        long dataOffset = run.get(ValueLayout.JAVA_LONG, EXIT_OFFSET + 8);
        return run.asSlice(dataOffset, (long) ioSize() * ioCount());
    }

    /** @return the first access's value, zero-extended (for an OUT, what the guest wrote) */
    public long ioValue() {
        MemorySegment data = ioData();
        return switch (ioSize()) {
            case 1 -> Byte.toUnsignedLong(data.get(ValueLayout.JAVA_BYTE, 0));
            case 2 -> Short.toUnsignedLong(data.get(ValueLayout.JAVA_SHORT_UNALIGNED, 0));
            case 4 -> Integer.toUnsignedLong(data.get(ValueLayout.JAVA_INT_UNALIGNED, 0));
            default -> throw new IllegalStateException("I/O exit of size " + ioSize());
        };
    }

    /** @return the guest-physical address of the access (KVM_EXIT_MMIO: kvm_run.mmio.phys_addr) */
    public long mmioPhysAddr() {
        return run.get(ValueLayout.JAVA_LONG, EXIT_OFFSET);
    }

    /**
     * @return the access's data, {@link #mmioLength()} bytes inside the kvm_run mapping
     *         (KVM_EXIT_MMIO: kvm_run.mmio.data). For a write it holds what the guest wrote; for a
     *         read, fill it in before the next {@link #run()}, which completes the access.
     */
    public MemorySegment mmioData() {
        return run.asSlice(EXIT_OFFSET + 8, mmioLength());
    }

    /** @return the access size in bytes, 1 to 8 (KVM_EXIT_MMIO: kvm_run.mmio.len) */
    public int mmioLength() {
        return Math.min(8, Math.max(0, run.get(ValueLayout.JAVA_INT, EXIT_OFFSET + 16)));
    }

    /** @return whether the access is a write (KVM_EXIT_MMIO: kvm_run.mmio.is_write) */
    public boolean mmioIsWrite() {
        return run.get(ValueLayout.JAVA_BYTE, EXIT_OFFSET + 20) != 0;
    }

    /** @return a description of the last exit for error messages: its name and the fields that explain it */
    public String describeExit() {
        int reason = exitReason();
        String name = KvmIoctls.exitName(reason);
        return switch (reason) {
            case KvmIoctls.KVM_EXIT_IO -> String.format("%s %s port %#x size %d count %d", name,
                    ioDirection() == KvmIoctls.KVM_EXIT_IO_OUT ? "out" : "in", ioPort(), ioSize(), ioCount());
            case KvmIoctls.KVM_EXIT_MMIO -> String.format("%s %s %#x len %d", name,
                    run.get(ValueLayout.JAVA_BYTE, EXIT_OFFSET + 20) != 0 ? "write" : "read",
                    run.get(ValueLayout.JAVA_LONG, EXIT_OFFSET), run.get(ValueLayout.JAVA_INT, EXIT_OFFSET + 16));
            case KvmIoctls.KVM_EXIT_FAIL_ENTRY -> String.format("%s hardware_entry_failure_reason %#x", name,
                    run.get(ValueLayout.JAVA_LONG, EXIT_OFFSET));
            case KvmIoctls.KVM_EXIT_UNKNOWN -> String.format("%s hardware_exit_reason %#x", name,
                    run.get(ValueLayout.JAVA_LONG, EXIT_OFFSET));
            case KvmIoctls.KVM_EXIT_INTERNAL_ERROR -> String.format("%s suberror %d", name,
                    run.get(ValueLayout.JAVA_INT, EXIT_OFFSET));
            default -> name;
        } + " on vCPU " + id;
    }

    /** @return the general-purpose registers (KVM_GET_REGS) */
    public KvmRegs getRegs() {
        ensureOpen();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment regs = arena.allocate(KvmStructs.KVM_REGS);
            Linux.ioctl(fd, KvmIoctls.KVM_GET_REGS, regs, "KVM_GET_REGS");
            return KvmRegs.read(regs);
        }
    }

    /** Sets the general-purpose registers (KVM_SET_REGS). */
    public void setRegs(KvmRegs regs) {
        ensureOpen();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment s = arena.allocate(KvmStructs.KVM_REGS);
            regs.write(s);
            Linux.ioctl(fd, KvmIoctls.KVM_SET_REGS, s, "KVM_SET_REGS");
        }
    }

    /** @return the special registers (KVM_GET_SREGS) */
    public KvmSregs getSregs() {
        ensureOpen();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment sregs = arena.allocate(KvmStructs.KVM_SREGS);
            Linux.ioctl(fd, KvmIoctls.KVM_GET_SREGS, sregs, "KVM_GET_SREGS");
            return KvmSregs.read(sregs);
        }
    }

    /** Sets the special registers (KVM_SET_SREGS). */
    public void setSregs(KvmSregs sregs) {
        ensureOpen();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment s = arena.allocate(KvmStructs.KVM_SREGS);
            sregs.write(s);
            Linux.ioctl(fd, KvmIoctls.KVM_SET_SREGS, s, "KVM_SET_SREGS");
        }
    }

    /**
     * Sets the CPUID the guest sees (KVM_SET_CPUID2); usually {@link Kvm#supportedCpuid()}. Do it
     * before KVM_SET_SREGS enters long mode: KVM checks EFER.LME against the guest's CPUID.
     */
    public void setCpuid2(KvmCpuid cpuid) {
        ensureOpen();
        try (Arena arena = Arena.ofConfined()) {
            Linux.ioctl(fd, KvmIoctls.KVM_SET_CPUID2, cpuid.write(arena), "KVM_SET_CPUID2");
        }
    }

    /**
     * @return this vCPU's dirty ring
     * @throws IllegalStateException if the VM did not enable the dirty ring before creating this vCPU
     */
    public KvmDirtyRing dirtyRing() {
        if (dirtyRing == null) {
            throw new IllegalStateException("vCPU " + id + " has no dirty ring: enable it on the VM before creating vCPUs");
        }
        return dirtyRing;
    }

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException("vCPU " + id + " is closed");
        }
    }

    /** Unmaps kvm_run and the dirty ring and closes the vCPU fd. Do not close a vCPU that is running. */
    @Override
    public void close() {
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
        }
        if (dirtyRing != null) {
            dirtyRing.unmap();
        }
        Linux.munmap(run);
        Linux.close(fd);
        vm.forget(this);
    }
}
