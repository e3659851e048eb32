package dev.ferry.kvm;

import dev.ferry.api.Availability;
import dev.ferry.memory.linux.Errno;
import dev.ferry.memory.linux.Linux;
import dev.ferry.memory.linux.LinuxException;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The KVM system device, {@code /dev/kvm}: version and capability queries, the host's CPUID
 * table, and VM creation. Like QEMU's kvm_init, {@link #open()} refuses any API version other
 * than {@value KvmIoctls#KVM_API_VERSION}. Closing it does not affect VMs it created.
 */
public final class Kvm implements AutoCloseable {

    /** The device path. */
    public static final String DEVICE = "/dev/kvm";

    private static final int E2BIG = 7;   // asm-generic/errno-base.h
    private static final int ENXIO = 6;

    private final int fd;
    private final int vcpuMmapSize;
    private volatile boolean closed;

    private Kvm(int fd) {
        this.fd = fd;
        this.vcpuMmapSize = Linux.ioctl(fd, KvmIoctls.KVM_GET_VCPU_MMAP_SIZE, 0L, "KVM_GET_VCPU_MMAP_SIZE");
    }

    /**
     * Opens {@code /dev/kvm} and checks its API version.
     *
     * @throws LinuxException        if the device cannot be opened (see {@link #probe()} for why)
     * @throws IllegalStateException if the kernel speaks another KVM API version
     */
    public static Kvm open() {
        int fd = Linux.open(DEVICE, Linux.O_RDWR | Linux.O_CLOEXEC);
        try {
            int version = Linux.ioctl(fd, KvmIoctls.KVM_GET_API_VERSION, 0L, "KVM_GET_API_VERSION");
            if (version != KvmIoctls.KVM_API_VERSION) {
                throw new IllegalStateException(DEVICE + " speaks KVM API version " + version + ", Ferry needs "
                        + KvmIoctls.KVM_API_VERSION + ": this kernel's KVM is not supported");
            }
            return new Kvm(fd);
        } catch (RuntimeException e) {
            Linux.close(fd);
            throw e;
        }
    }

    /**
     * Whether this host's KVM is PVM (module {@code kvm_pvm}, "pagetable-based virtual machine"):
     * KVM without hardware virtualization, found on nested cloud hosts. It runs a guest that is
     * not PVM-enlightened, such as Ferry's, by emulating its instructions (measured on such a
     * host: about 1 µs per guest instruction, every store a KVM exit), and its emulator pushes
     * dirty-ring entries without checking the ring's soft limit, so rings overflow
     * (kvm_dirty_ring_push WARNs in the host's log).
     */
    public static boolean isPvm() {
        Path modules = Path.of("/sys/module");
        return Files.isDirectory(modules.resolve("kvm_pvm")) && !Files.isDirectory(modules.resolve("kvm_intel"))
                && !Files.isDirectory(modules.resolve("kvm_amd"));
    }

    /**
     * Whether real KVM works on this host: /dev/kvm opens, speaks API version 12 and can create a
     * VM. Never throws; an unavailable answer says what to do about it.
     */
    public static Availability probe() {
        try (Kvm kvm = open()) {
            kvm.createVm().close(); // some hosts open /dev/kvm but refuse VMs (nested virtualization off)
            return Availability.yes();
        } catch (LinuxException e) {
            return Availability.no(reasonFor(e));
        } catch (RuntimeException | LinkageError e) {
            return Availability.no("KVM cannot be used: " + e.getMessage());
        }
    }

    private static String reasonFor(LinuxException e) {
        boolean opening = e.call().startsWith("open");
        return switch (e.errno()) {
            case Errno.ENOENT -> DEVICE + " does not exist: this host has no KVM (load kvm_intel or kvm_amd, "
                    + "enable virtualization in the firmware, or nested virtualization in the outer hypervisor)";
            case Errno.EACCES, Errno.EPERM -> opening
                    ? "permission denied on " + DEVICE + ": add the user to the group that owns it (usually 'kvm') "
                    + "or run as root"
                    : e.getMessage() + ": KVM refused to create a VM (is this process allowed to use KVM?)";
            case Errno.ENODEV, ENXIO -> DEVICE + " exists but no KVM driver answers it (" + e.getMessage()
                    + "): load kvm_intel or kvm_amd";
            default -> "KVM cannot be used: " + e.getMessage();
        };
    }

    int fd() {
        ensureOpen();
        return fd;
    }

    /** @return the KVM API version (always 12 once opened) */
    public int apiVersion() {
        return Linux.ioctl(fd(), KvmIoctls.KVM_GET_API_VERSION, 0L, "KVM_GET_API_VERSION");
    }

    /**
     * KVM_CHECK_EXTENSION on the system fd.
     *
     * @return 0 if the capability is missing, else a positive value whose meaning depends on it
     */
    public int checkExtension(int cap) {
        return Linux.ioctl(fd(), KvmIoctls.KVM_CHECK_EXTENSION, cap, "KVM_CHECK_EXTENSION");
    }

    /** @return the size of the kvm_run mapping of each vCPU fd (KVM_GET_VCPU_MMAP_SIZE) */
    public int vcpuMmapSize() {
        return vcpuMmapSize;
    }

    /** @return the CPUID leaves KVM can virtualize on this host (KVM_GET_SUPPORTED_CPUID) */
    public KvmCpuid supportedCpuid() {
        // The kernel answers E2BIG until the buffer is large enough; QEMU's get_supported_cpuid
        // grows it the same way.
        for (int nent = 128; ; nent *= 2) {
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment cpuid = KvmCpuid.allocate(arena, nent);
                try {
                    Linux.ioctl(fd(), KvmIoctls.KVM_GET_SUPPORTED_CPUID, cpuid, "KVM_GET_SUPPORTED_CPUID");
                } catch (LinuxException e) {
                    if (e.errno() == E2BIG && nent < 1 << 16) {
                        continue;
                    }
                    throw e;
                }
                return KvmCpuid.read(cpuid);
            }
        }
    }

    /** @return a new VM (KVM_CREATE_VM, machine type 0) */
    public KvmVm createVm() {
        int vmFd = Linux.ioctl(fd(), KvmIoctls.KVM_CREATE_VM, 0L, "KVM_CREATE_VM");
        return new KvmVm(this, vmFd);
    }

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException(DEVICE + " handle is closed");
        }
    }

    @Override
    public synchronized void close() {
        if (!closed) {
            closed = true;
            Linux.close(fd);
        }
    }
}
