package dev.ferry.kvm;

import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * KVM's ioctl numbers, capabilities, exit reasons and flags for x86-64, with the kernel's names.
 * Sources: include/uapi/linux/kvm.h (ioctls, caps, exits, flags), arch/x86/include/uapi/asm/kvm.h
 * (KVM_DIRTY_LOG_PAGE_OFFSET) and include/uapi/asm-generic/ioctl.h (the _IO* encoding). The
 * numbers are computed the way the header does, from the struct layouts in {@link KvmStructs},
 * and checked against the installed header by a test.
 */
public final class KvmIoctls {

    // include/uapi/asm-generic/ioctl.h: dir:2 | size:14 | type:8 | nr:8.
    private static final int IOC_NONE = 0;
    private static final int IOC_WRITE = 1;
    private static final int IOC_READ = 2;

    private static long ioc(int dir, int type, int nr, long size) {
        if (size >= 1 << 14) {
            throw new IllegalArgumentException("ioctl argument too large: " + size);
        }
        return ((long) dir << 30) | (size << 16) | ((long) type << 8) | nr;
    }

    private static long io(int nr) {
        return ioc(IOC_NONE, KVMIO, nr, 0);
    }

    private static long ior(int nr, long size) {
        return ioc(IOC_READ, KVMIO, nr, size);
    }

    private static long iow(int nr, long size) {
        return ioc(IOC_WRITE, KVMIO, nr, size);
    }

    private static long iowr(int nr, long size) {
        return ioc(IOC_READ | IOC_WRITE, KVMIO, nr, size);
    }

    /** The ioctl type byte of every KVM request. */
    public static final int KVMIO = 0xAE;

    /** The only KVM API version there has ever been. */
    public static final int KVM_API_VERSION = 12;

    // ioctls on /dev/kvm
    public static final long KVM_GET_API_VERSION = io(0x00);
    public static final long KVM_CREATE_VM = io(0x01);
    public static final long KVM_CHECK_EXTENSION = io(0x03);
    public static final long KVM_GET_VCPU_MMAP_SIZE = io(0x04);
    public static final long KVM_GET_SUPPORTED_CPUID = iowr(0x05, KvmStructs.KVM_CPUID2.byteSize());

    // ioctls on a VM fd
    public static final long KVM_CREATE_VCPU = io(0x41);
    public static final long KVM_GET_DIRTY_LOG = iow(0x42, KvmStructs.KVM_DIRTY_LOG.byteSize());
    public static final long KVM_SET_USER_MEMORY_REGION = iow(0x46, KvmStructs.KVM_USERSPACE_MEMORY_REGION.byteSize());
    public static final long KVM_SET_TSS_ADDR = io(0x47);
    public static final long KVM_SET_IDENTITY_MAP_ADDR = iow(0x48, JAVA_LONG.byteSize());
    public static final long KVM_ENABLE_CAP = iow(0xA3, KvmStructs.KVM_ENABLE_CAP.byteSize());
    public static final long KVM_CLEAR_DIRTY_LOG = iowr(0xC0, KvmStructs.KVM_CLEAR_DIRTY_LOG.byteSize());
    public static final long KVM_RESET_DIRTY_RINGS = io(0xC7);

    // ioctls on a vCPU fd
    public static final long KVM_RUN = io(0x80);
    public static final long KVM_GET_REGS = ior(0x81, KvmStructs.KVM_REGS.byteSize());
    public static final long KVM_SET_REGS = iow(0x82, KvmStructs.KVM_REGS.byteSize());
    public static final long KVM_GET_SREGS = ior(0x83, KvmStructs.KVM_SREGS.byteSize());
    public static final long KVM_SET_SREGS = iow(0x84, KvmStructs.KVM_SREGS.byteSize());
    public static final long KVM_SET_CPUID2 = iow(0x90, KvmStructs.KVM_CPUID2.byteSize());

    // Capabilities (KVM_CHECK_EXTENSION / KVM_ENABLE_CAP)
    public static final int KVM_CAP_USER_MEMORY = 3;
    public static final int KVM_CAP_SET_TSS_ADDR = 4;
    public static final int KVM_CAP_EXT_CPUID = 7;
    public static final int KVM_CAP_READONLY_MEM = 81;
    public static final int KVM_CAP_NR_VCPUS = 9;
    public static final int KVM_CAP_NR_MEMSLOTS = 10;
    public static final int KVM_CAP_MAX_VCPUS = 66;
    public static final int KVM_CAP_CHECK_EXTENSION_VM = 105;
    public static final int KVM_CAP_IMMEDIATE_EXIT = 136;
    public static final int KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 = 168;
    public static final int KVM_CAP_DIRTY_LOG_RING = 192;
    public static final int KVM_CAP_DIRTY_LOG_RING_ACQ_REL = 223;

    // kvm_userspace_memory_region.flags
    public static final int KVM_MEM_LOG_DIRTY_PAGES = 1;
    public static final int KVM_MEM_READONLY = 1 << 1;

    // KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 arguments
    public static final int KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE = 1;
    public static final int KVM_DIRTY_LOG_INITIALLY_SET = 1 << 1;

    // kvm_dirty_gfn.flags
    public static final int KVM_DIRTY_GFN_F_DIRTY = 1;
    public static final int KVM_DIRTY_GFN_F_RESET = 1 << 1;

    /** Page offset of the dirty ring in a vCPU fd's mapping (arch/x86/include/uapi/asm/kvm.h). */
    public static final int KVM_DIRTY_LOG_PAGE_OFFSET = 64;

    // kvm_run.exit_reason
    public static final int KVM_EXIT_UNKNOWN = 0;
    public static final int KVM_EXIT_EXCEPTION = 1;
    public static final int KVM_EXIT_IO = 2;
    public static final int KVM_EXIT_HYPERCALL = 3;
    public static final int KVM_EXIT_DEBUG = 4;
    public static final int KVM_EXIT_HLT = 5;
    public static final int KVM_EXIT_MMIO = 6;
    public static final int KVM_EXIT_SHUTDOWN = 8;
    public static final int KVM_EXIT_FAIL_ENTRY = 9;
    public static final int KVM_EXIT_INTR = 10;
    public static final int KVM_EXIT_INTERNAL_ERROR = 17;
    public static final int KVM_EXIT_SYSTEM_EVENT = 24;
    public static final int KVM_EXIT_DIRTY_RING_FULL = 31;

    // kvm_run.io.direction
    public static final int KVM_EXIT_IO_IN = 0;
    public static final int KVM_EXIT_IO_OUT = 1;

    private KvmIoctls() {
    }

    /** @return the kernel's name for an exit reason, e.g. {@code "KVM_EXIT_IO"}, for messages */
    public static String exitName(int reason) {
        return switch (reason) {
            case KVM_EXIT_UNKNOWN -> "KVM_EXIT_UNKNOWN";
            case KVM_EXIT_EXCEPTION -> "KVM_EXIT_EXCEPTION";
            case KVM_EXIT_IO -> "KVM_EXIT_IO";
            case KVM_EXIT_HYPERCALL -> "KVM_EXIT_HYPERCALL";
            case KVM_EXIT_DEBUG -> "KVM_EXIT_DEBUG";
            case KVM_EXIT_HLT -> "KVM_EXIT_HLT";
            case KVM_EXIT_MMIO -> "KVM_EXIT_MMIO";
            case KVM_EXIT_SHUTDOWN -> "KVM_EXIT_SHUTDOWN";
            case KVM_EXIT_FAIL_ENTRY -> "KVM_EXIT_FAIL_ENTRY";
            case KVM_EXIT_INTR -> "KVM_EXIT_INTR";
            case KVM_EXIT_INTERNAL_ERROR -> "KVM_EXIT_INTERNAL_ERROR";
            case KVM_EXIT_SYSTEM_EVENT -> "KVM_EXIT_SYSTEM_EVENT";
            case KVM_EXIT_DIRTY_RING_FULL -> "KVM_EXIT_DIRTY_RING_FULL";
            default -> "KVM_EXIT_" + reason;
        };
    }
}
