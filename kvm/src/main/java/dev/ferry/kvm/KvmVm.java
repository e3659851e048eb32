package dev.ferry.kvm;

import static java.lang.foreign.MemoryLayout.PathElement.groupElement;

import dev.ferry.memory.linux.Linux;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * A KVM virtual machine (a VM fd): memory slots, dirty logging (bitmap, manual protect, dirty
 * ring) and vCPUs. Closing the VM closes its vCPUs first.
 *
 * <p>Thread safety: slot changes and capability changes are serialized on this object; dirty-log
 * calls on different slots may run concurrently from different threads, as in QEMU.
 */
public final class KvmVm implements AutoCloseable {

    /** Guest page size KVM's dirty logs count in. */
    public static final int PAGE_SIZE = 4096;

    private final int fd;
    private final int vcpuMmapSize;
    /** Slot id → size in bytes, to size-check the bitmaps the kernel writes into. */
    private final Map<Integer, Long> slotSizes = new HashMap<>();
    private final List<KvmVcpu> vcpus = new ArrayList<>();
    private final KvmRunInhibitor runInhibitor = new KvmRunInhibitor(this::vcpus);
    private int manualProtectFlags;
    private int dirtyRingBytes;
    /** Whether KVM_CREATE_VCPU ever succeeded: the kernel keeps vCPUs until the VM dies. */
    private boolean vcpuCreated;
    private boolean closed;

    KvmVm(Kvm kvm, int fd) {
        this.fd = fd;
        this.vcpuMmapSize = kvm.vcpuMmapSize();
    }

    int fd() {
        return fd;
    }

    /**
     * KVM_CHECK_EXTENSION on the VM fd, which answers for this VM (KVM_CAP_CHECK_EXTENSION_VM).
     *
     * @return 0 if the capability is missing, else its capability-specific value
     */
    public int checkExtension(int cap) {
        return Linux.ioctl(fd, KvmIoctls.KVM_CHECK_EXTENSION, cap, "KVM_CHECK_EXTENSION");
    }

    /**
     * Creates, changes or deletes a memory slot (KVM_SET_USER_MEMORY_REGION).
     *
     * @param slot  slot id (address space 0)
     * @param flags {@link KvmIoctls#KVM_MEM_LOG_DIRTY_PAGES}, {@link KvmIoctls#KVM_MEM_READONLY}
     * @param gpa   guest-physical start, page-aligned
     * @param size  bytes, page-aligned; 0 deletes the slot
     * @param host  the host memory backing it, at least {@code size} bytes (ignored when deleting)
     */
    public synchronized void setUserMemoryRegion(int slot, int flags, long gpa, long size, MemorySegment host) {
        ensureOpen();
        if (slot < 0 || gpa < 0 || size < 0 || gpa % PAGE_SIZE != 0 || size % PAGE_SIZE != 0) {
            throw new IllegalArgumentException(String.format(
                    "memory slot %d: gpa %#x and size %#x must be non-negative and page-aligned", slot, gpa, size));
        }
        if (size > 0 && (host.byteSize() < size || host.address() % PAGE_SIZE != 0)) {
            throw new IllegalArgumentException(String.format(
                    "memory slot %d: host memory of %d bytes at %#x cannot back %d bytes (needs page alignment)",
                    slot, host.byteSize(), host.address(), size));
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment region = arena.allocate(KvmStructs.KVM_USERSPACE_MEMORY_REGION);
            region.set(ValueLayout.JAVA_INT, 0, slot);
            region.set(ValueLayout.JAVA_INT, 4, flags);
            region.set(ValueLayout.JAVA_LONG, 8, gpa);
            region.set(ValueLayout.JAVA_LONG, 16, size);
            region.set(ValueLayout.JAVA_LONG, 24, size == 0 ? 0 : host.address());
            Linux.ioctl(fd, KvmIoctls.KVM_SET_USER_MEMORY_REGION, region, "KVM_SET_USER_MEMORY_REGION");
        }
        if (size == 0) {
            slotSizes.remove(slot);
        } else {
            slotSizes.put(slot, size);
        }
    }

    /** @return bytes of dirty bitmap a slot of {@code size} bytes needs (one bit per page, whole u64s) */
    public static long bitmapBytes(long size) {
        long pages = size / PAGE_SIZE;
        return (pages + 63) / 64 * 8;
    }

    private synchronized long slotSize(int slot) {
        Long size = slotSizes.get(slot);
        if (size == null) {
            throw new IllegalArgumentException("memory slot " + slot + " does not exist");
        }
        return size;
    }

    /**
     * Copies a slot's dirty bitmap into {@code bitmap} (KVM_GET_DIRTY_LOG): bit n of the
     * little-endian u64 words is page n of the slot. Without manual protect the kernel clears its
     * log and write-protects the pages again; with it, that waits for {@link #clearDirtyLog}.
     * Fails with ENXIO/EINVAL when the VM uses the dirty ring instead.
     *
     * @param bitmap native memory of at least {@link #bitmapBytes} of the slot's size
     */
    public void getDirtyLog(int slot, MemorySegment bitmap) {
        ensureOpen();
        long need = bitmapBytes(slotSize(slot));
        if (bitmap.byteSize() < need || !bitmap.isNative()) {
            throw new IllegalArgumentException("memory slot " + slot + " needs a native bitmap of " + need
                    + " bytes, got " + bitmap.byteSize());
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment log = arena.allocate(KvmStructs.KVM_DIRTY_LOG);
            log.set(ValueLayout.JAVA_INT, 0, slot);
            log.set(ValueLayout.ADDRESS, KvmStructs.KVM_DIRTY_LOG.byteOffset(groupElement("dirty_bitmap")), bitmap);
            Linux.ioctl(fd, KvmIoctls.KVM_GET_DIRTY_LOG, log, "KVM_GET_DIRTY_LOG");
        }
    }

    /**
     * Clears pages from a slot's dirty log and write-protects them again (KVM_CLEAR_DIRTY_LOG,
     * needs {@link #enableManualDirtyLogProtect()}). Bit n of {@code bitmap} is page
     * {@code firstPage + n}; only set bits are cleared.
     *
     * @param firstPage a multiple of 64
     * @param numPages  a multiple of 64, or reaching exactly the end of the slot
     */
    public void clearDirtyLog(int slot, long firstPage, int numPages, MemorySegment bitmap) {
        ensureOpen();
        long pages = slotSize(slot) / PAGE_SIZE;
        if (firstPage < 0 || firstPage % 64 != 0 || numPages < 0 || firstPage + numPages > pages
                || (numPages % 64 != 0 && firstPage + numPages != pages)) {
            throw new IllegalArgumentException(String.format("memory slot %d of %d pages: cannot clear %d pages at %d "
                    + "(first page and count must be multiples of 64, or reach the slot's end)",
                    slot, pages, numPages, firstPage));
        }
        long need = (numPages + 63L) / 64 * 8;
        if (bitmap.byteSize() < need || !bitmap.isNative()) {
            throw new IllegalArgumentException("clearing " + numPages + " pages needs a native bitmap of " + need
                    + " bytes, got " + bitmap.byteSize());
        }
        if (manualProtectFlags == 0) {
            throw new IllegalStateException("KVM_CLEAR_DIRTY_LOG needs KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 enabled first");
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment clear = arena.allocate(KvmStructs.KVM_CLEAR_DIRTY_LOG);
            clear.set(ValueLayout.JAVA_INT, 0, slot);
            clear.set(ValueLayout.JAVA_INT, 4, numPages);
            clear.set(ValueLayout.JAVA_LONG, 8, firstPage);
            clear.set(ValueLayout.ADDRESS, 16, bitmap);
            Linux.ioctl(fd, KvmIoctls.KVM_CLEAR_DIRTY_LOG, clear, "KVM_CLEAR_DIRTY_LOG");
        }
    }

    /** Enables a VM capability (KVM_ENABLE_CAP) with up to four u64 arguments. */
    public synchronized void enableCap(int cap, long... args) {
        ensureOpen();
        if (args.length > 4) {
            throw new IllegalArgumentException("kvm_enable_cap takes at most 4 arguments");
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment enable = arena.allocate(KvmStructs.KVM_ENABLE_CAP);
            enable.set(ValueLayout.JAVA_INT, 0, cap);
            for (int i = 0; i < args.length; i++) {
                enable.set(ValueLayout.JAVA_LONG, 8 + 8L * i, args[i]);
            }
            Linux.ioctl(fd, KvmIoctls.KVM_ENABLE_CAP, enable, "KVM_ENABLE_CAP(" + cap + ")");
        }
    }

    /**
     * Turns on manual dirty-log protection as QEMU's kvm_init does: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2
     * with KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, plus KVM_DIRTY_LOG_INITIALLY_SET where the kernel
     * offers it (a slot starting dirty logging then reports every page dirty, and pages are
     * write-protected only as they are cleared, so starting the log costs nothing up front).
     * Call it before creating slots with dirty logging.
     *
     * @return the flags enabled, 0 if the kernel lacks the capability
     */
    public synchronized int enableManualDirtyLogProtect() {
        int offered = checkExtension(KvmIoctls.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
        int flags = offered & (KvmIoctls.KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KvmIoctls.KVM_DIRTY_LOG_INITIALLY_SET);
        if ((flags & KvmIoctls.KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) == 0) {
            return 0;
        }
        enableCap(KvmIoctls.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, flags);
        manualProtectFlags = flags;
        return flags;
    }

    /** @return the manual-protect flags enabled, 0 if none */
    public synchronized int manualDirtyLogProtect() {
        return manualProtectFlags;
    }

    /**
     * @return the largest dirty ring per vCPU this VM allows, in bytes, 0 if the kernel has no
     *         dirty ring
     */
    public int maxDirtyRingBytes() {
        int acqRel = checkExtension(KvmIoctls.KVM_CAP_DIRTY_LOG_RING_ACQ_REL);
        return acqRel > 0 ? acqRel : checkExtension(KvmIoctls.KVM_CAP_DIRTY_LOG_RING);
    }

    /**
     * Switches the VM from dirty bitmaps to per-vCPU dirty rings of {@code bytes} each, like
     * QEMU's kvm_dirty_ring_init: KVM_CAP_DIRTY_LOG_RING_ACQ_REL where offered (the ordering
     * {@link KvmDirtyRing} uses), else KVM_CAP_DIRTY_LOG_RING. Slots still need
     * KVM_MEM_LOG_DIRTY_PAGES to be logged.
     *
     * @param bytes a power of two, a multiple of the page size, at most {@link #maxDirtyRingBytes()}
     * @throws IllegalStateException if a vCPU exists already (the kernel sizes rings at vCPU creation),
     *                               or the kernel has no dirty ring
     */
    public synchronized void enableDirtyRing(int bytes) {
        ensureOpen();
        if (vcpuCreated) {
            throw new IllegalStateException("the dirty ring must be enabled before any vCPU is created: "
                    + "choose trackers before creating the machine's vCPUs");
        }
        if (dirtyRingBytes != 0) {
            throw new IllegalStateException("the dirty ring is already enabled (" + dirtyRingBytes + " bytes)");
        }
        int max = maxDirtyRingBytes();
        if (max == 0) {
            throw new IllegalStateException("this kernel has no KVM dirty ring (KVM_CAP_DIRTY_LOG_RING)");
        }
        if (Integer.bitCount(bytes) != 1 || bytes < PAGE_SIZE || bytes > max) {
            throw new IllegalArgumentException("dirty ring of " + bytes + " bytes: must be a power of two from "
                    + PAGE_SIZE + " to " + max + " (" + max / KvmStructs.KVM_DIRTY_GFN.byteSize() + " entries)");
        }
        int cap = checkExtension(KvmIoctls.KVM_CAP_DIRTY_LOG_RING_ACQ_REL) > 0
                ? KvmIoctls.KVM_CAP_DIRTY_LOG_RING_ACQ_REL : KvmIoctls.KVM_CAP_DIRTY_LOG_RING;
        enableCap(cap, bytes);
        dirtyRingBytes = bytes;
    }

    /** @return the per-vCPU dirty ring size in bytes, 0 if the VM uses dirty bitmaps */
    public synchronized int dirtyRingBytes() {
        return dirtyRingBytes;
    }

    /**
     * Tells KVM to re-protect the pages of every ring entry userspace has marked RESET
     * (KVM_RESET_DIRTY_RINGS), freeing those entries.
     *
     * @return the number of entries reset
     */
    public int resetDirtyRings() {
        ensureOpen();
        return Linux.ioctl(fd, KvmIoctls.KVM_RESET_DIRTY_RINGS, 0L, "KVM_RESET_DIRTY_RINGS");
    }

    /**
     * Places the three pages Intel VMX needs for real-mode emulation (KVM_SET_TSS_ADDR); QEMU
     * uses 0xfffbd000. Not needed for a guest started directly in long mode.
     */
    public void setTssAddr(long gpa) {
        ensureOpen();
        Linux.ioctl(fd, KvmIoctls.KVM_SET_TSS_ADDR, gpa, "KVM_SET_TSS_ADDR");
    }

    /** Places the identity-map page Intel VMX needs for unpaged real mode (KVM_SET_IDENTITY_MAP_ADDR). */
    public void setIdentityMapAddr(long gpa) {
        ensureOpen();
        try (Arena arena = Arena.ofConfined()) {
            Linux.ioctl(fd, KvmIoctls.KVM_SET_IDENTITY_MAP_ADDR, arena.allocateFrom(ValueLayout.JAVA_LONG, gpa),
                    "KVM_SET_IDENTITY_MAP_ADDR");
        }
    }

    /** @return a new vCPU with APIC id {@code id} (KVM_CREATE_VCPU), its kvm_run page mapped */
    public synchronized KvmVcpu createVcpu(int id) {
        ensureOpen();
        int vcpuFd = Linux.ioctl(fd, KvmIoctls.KVM_CREATE_VCPU, id, "KVM_CREATE_VCPU");
        vcpuCreated = true;
        KvmVcpu vcpu;
        try {
            vcpu = new KvmVcpu(this, id, vcpuFd, vcpuMmapSize, dirtyRingBytes);
        } catch (RuntimeException e) {
            Linux.close(vcpuFd);
            throw e;
        }
        vcpus.add(vcpu);
        return vcpu;
    }

    /** @return what keeps this VM's vCPUs out of KVM_RUN while memory slots are replaced */
    KvmRunInhibitor runInhibitor() {
        return runInhibitor;
    }

    /** @return the vCPUs created and not closed, in creation order (for dirty-ring trackers) */
    public synchronized List<KvmVcpu> vcpus() {
        return List.copyOf(vcpus);
    }

    synchronized void forget(KvmVcpu vcpu) {
        vcpus.remove(vcpu);
    }

    private synchronized void ensureOpen() {
        if (closed) {
            throw new IllegalStateException("the VM is closed");
        }
    }

    @Override
    public void close() {
        List<KvmVcpu> open;
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
            open = List.copyOf(vcpus);
        }
        for (KvmVcpu vcpu : open) {
            vcpu.close();
        }
        Linux.close(fd);
    }
}
