package dev.ferry.kvm;

import dev.ferry.api.MemoryListener;
import dev.ferry.api.MemorySection;
import dev.ferry.api.RamBlock;
import dev.ferry.machine.Accelerator;
import dev.ferry.machine.VcpuLoop;
import dev.ferry.machine.VcpuSetup;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import dev.ferry.memory.AddressSpace;
import dev.ferry.memory.MemorySystem;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Optional;

/**
 * The {@code kvm} accelerator: one KVM VM whose memory slots follow the machine's flat view, and
 * one KVM vCPU per machine vCPU running {@link GuestCode}.
 *
 * <h2>Set-up order</h2>
 * The constructor creates the VM and settles what KVM only accepts early: the dirty ring (before
 * any vCPU, {@code kvm_dirty_ring_init}) and manual dirty-log protection with
 * KVM_DIRTY_LOG_INITIALLY_SET (before any slot logs dirty pages, as in QEMU's kvm_init).
 * {@link #attach} then registers the {@code kvm-memslots} listener, so the RAM the machine maps
 * afterwards becomes memory slots; {@link #createVcpu} comes last.
 *
 * <h2>Memory slots</h2>
 * The listener is QEMU's kvm_memory_listener (accel/kvm/kvm-all.c), priority 10 as there:
 * regionAdd of a RAM section → KVM_SET_USER_MEMORY_REGION with the lowest free slot id and the
 * host address {@code ramBlock.host() + offsetInBlock} (kvm_set_phys_mem); regionDel → the slot
 * is deleted, after its dirty log, if it logs, is fetched and marked in the RAM block so no page
 * written before the deletion is lost; logStart/logStop → KVM_MEM_LOG_DIRTY_PAGES is set or
 * cleared, only on transitions of the mask from or to 0 (kvm_log_start/kvm_log_stop). Sections
 * that are not page-aligned are trimmed to whole pages (kvm_align_section). Read-only RAM gets
 * KVM_MEM_READONLY where the kernel has KVM_CAP_READONLY_MEM, and no slot otherwise. I/O sections
 * get no slot: guest accesses to them exit with KVM_EXIT_MMIO and {@link KvmVcpuLoop} performs
 * them through the address space.
 *
 * <h2>Guest memory layout</h2>
 * RAM is mapped at guest-physical 0. The first {@link #RESERVED_BYTES} (2 MiB) hold the guest
 * program at {@link #CODE_GPA} and the identity-map page tables at {@link #PAGE_TABLES_GPA}; the
 * workload's working set must lie above, or createVcpu fails saying so.
 */
public final class KvmAccelerator implements Accelerator {

    /** Bytes at the start of guest RAM that belong to the guest program and its page tables. */
    public static final long RESERVED_BYTES = 2L << 20;

    @Override
    public long reservedRamBytes() {
        return RESERVED_BYTES;
    }
    /** Where the guest program is loaded. */
    public static final long CODE_GPA = 0x1000;
    /** Where the PML4 starts; the PDPT and page directories follow. */
    public static final long PAGE_TABLES_GPA = 0x2000;
    /** Most page writes between two pacing exits when the workload is not rate-limited. */
    static final int MAX_PAGES_PER_EXIT = 256;

    private final KvmAcceleratorProperties properties;
    private final Kvm kvm;
    private final KvmVm vm;
    private final KvmMemslots memslots;
    private final boolean readonlyMem;
    private final Memslots listener = new Memslots();
    private volatile DirtyRingReaper dirtyRingReaper;
    private AddressSpace addressSpace;
    private KvmCpuid cpuid;
    private GuestCode.Layout layout;
    private boolean guestLoaded;
    /** Where the guest program counts a write it made ({@link GuestCode#pagesWritten}). */
    private long commitRip = -1;
    private volatile boolean closed;

    KvmAccelerator(KvmAcceleratorProperties properties) {
        this.properties = properties;
        this.kvm = Kvm.open();
        KvmVm created = null;
        try {
            created = kvm.createVm();
            properties.checkDirtyRing(created.maxDirtyRingBytes());
            if (properties.dirtyRingEntries() > 0) {
                created.enableDirtyRing(properties.dirtyRingBytes());
            }
            if (properties.wantsManualProtect(created.checkExtension(KvmIoctls.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2))) {
                created.enableManualDirtyLogProtect();
            }
            int nr = created.checkExtension(KvmIoctls.KVM_CAP_NR_MEMSLOTS);
            // Kernels before KVM_CAP_NR_MEMSLOTS had 32 slots, as QEMU's kvm_init assumes.
            this.memslots = new KvmMemslots(Math.min(nr > 0 ? nr : 32, 0x7FFF));
            this.readonlyMem = created.checkExtension(KvmIoctls.KVM_CAP_READONLY_MEM) > 0;
            this.vm = created;
        } catch (RuntimeException e) {
            if (created != null) {
                created.close();
            }
            kvm.close();
            throw e;
        }
    }

    @Override
    public String name() {
        return KvmAcceleratorProvider.NAME;
    }

    /** @return the properties the accelerator was made with */
    public KvmAcceleratorProperties properties() {
        return properties;
    }

    /** @return the KVM system device */
    public Kvm kvm() {
        return kvm;
    }

    /** @return the VM, for trackers (dirty logs, rings) */
    public KvmVm vm() {
        return vm;
    }

    /** @return the memory slot table, for trackers; use it under {@link KvmMemslots#lock()} */
    public KvmMemslots memslots() {
        return memslots;
    }

    /** @return the manual-protect flags enabled on the VM (0 if KVM_GET_DIRTY_LOG clears by itself) */
    public int manualDirtyLogProtect() {
        return vm.manualDirtyLogProtect();
    }

    /**
     * What harvests the vCPUs' dirty rings when the VM uses them: the ring tracker (QEMU's
     * kvm_dirty_ring_reap and its callers in kvm-all.c).
     */
    public interface DirtyRingReaper {

        /**
         * Harvests every ring and resets them (kvm_dirty_ring_reap_locked). Called with the slot
         * lock held, on the thread changing the memory map: before a logging slot stops logging
         * or is deleted, and once more right after KVM deleted it but before its id is freed, so
         * entries for the slot are collected while its id is still its own.
         */
        void reap();

        /**
         * KVM_EXIT_DIRTY_RING_FULL, on the vCPU's own thread; the vCPU re-enters the guest
         * afterwards. Throw to stop the vCPU when the ring cannot be drained.
         */
        default void ringFull(KvmVcpu vcpu) {
            reap();
        }

        /**
         * A pacing or kick exit, on the vCPU's own thread and outside guest mode: the moment to
         * look at how full the vCPU's ring is (QEMU's soft limit). Must be cheap.
         */
        default void vcpuExit(KvmVcpu vcpu) {
        }
    }

    /**
     * Sets (or, with null, clears) what harvests the vCPUs' dirty rings when the VM uses them.
     *
     * @see DirtyRingReaper
     */
    public void setDirtyRingReaper(DirtyRingReaper reaper) {
        this.dirtyRingReaper = reaper;
    }

    /** @return the dirty ring reaper set, or null */
    public DirtyRingReaper dirtyRingReaper() {
        return dirtyRingReaper;
    }

    @Override
    public void attach(MemorySystem memory, AddressSpace systemMemory) {
        if (addressSpace != null) {
            throw new IllegalStateException("the kvm accelerator is attached already");
        }
        this.addressSpace = systemMemory;
        systemMemory.registerListener(listener);
    }

    @Override
    public <T> Optional<T> lookup(Class<T> type) {
        for (Object service : new Object[]{this, vm, memslots, kvm}) {
            if (type.isInstance(service)) {
                return Optional.of(type.cast(service));
            }
        }
        return Optional.empty();
    }

    /**
     * Checks that a vCPU's slice of the working set stays clear of the reserved area.
     *
     * @throws IllegalArgumentException saying how to move the working set
     */
    public static void checkWorkingSet(long sliceGpa, long sliceBytes) {
        if (sliceGpa < RESERVED_BYTES) {
            throw new IllegalArgumentException(String.format("the kvm accelerator keeps guest RAM [0, 0x%x) for the "
                    + "guest program and its page tables, but the workload's working set reaches down to 0x%x; "
                    + "start the working set at 2 MiB or above (working-set offset %d)", RESERVED_BYTES, sliceGpa,
                    RESERVED_BYTES));
        }
        if (sliceBytes < KvmVm.PAGE_SIZE) {
            throw new IllegalArgumentException("a vCPU's slice of the working set must be at least one page");
        }
    }

    /**
     * @return page writes between two pacing exits: about a millisecond's worth at the target rate
     *         (so the host's pacing sleeps stay short and pause stays prompt), at most
     *         {@value #MAX_PAGES_PER_EXIT}
     */
    static int pagesPerExit(double pagesPerSecond) {
        if (!(pagesPerSecond > 0)) {
            return MAX_PAGES_PER_EXIT;
        }
        return (int) Math.max(1, Math.min(MAX_PAGES_PER_EXIT, Math.round(pagesPerSecond / 1000)));
    }

    static GuestCode.Pattern guestPattern(Pattern pattern) {
        return switch (pattern) {
            case SEQUENTIAL -> GuestCode.Pattern.SEQUENTIAL;
            case RANDOM -> GuestCode.Pattern.RANDOM;
            case HOTCOLD -> GuestCode.Pattern.HOTCOLD;
            case IDLE -> throw new IllegalArgumentException("an idle workload runs no guest program");
        };
    }

    /** @return the xorshift seed of vCPU {@code index}, mixed as PageCursor mixes it */
    static long vcpuSeed(long seed, int index) {
        long s = seed ^ (0x9E3779B97F4A7C15L * (index + 1));
        return s == 0 ? 1 : s;
    }

    @Override
    public synchronized VcpuLoop createVcpu(int index, VcpuSetup setup) {
        ensureOpen();
        if (addressSpace == null) {
            throw new IllegalStateException("attach the kvm accelerator to the machine's memory before creating vCPUs");
        }
        Workload workload = setup.workload();
        boolean idle = workload.pattern() == Pattern.IDLE;
        long sliceGpa = setup.firstPage() * KvmVm.PAGE_SIZE;
        long sliceBytes = setup.pageCount() * KvmVm.PAGE_SIZE;
        if (!idle) {
            checkWorkingSet(sliceGpa, sliceBytes);
        }
        if (!guestLoaded) {
            loadGuest(setup);
        }
        KvmVcpu vcpu = vm.createVcpu(index);
        try {
            if (!idle) {
                GuestCode.Slice slice = new GuestCode.Slice(sliceGpa, sliceBytes, vcpuSeed(workload.seed(), index),
                        workload.hotFraction(), workload.hotProbability());
                GuestCode.setUp(vcpu, cpuid(), layout, slice);
            }
            return new KvmVcpuLoop(this, index, vcpu, idle, addressSpace, commitRip);
        } catch (RuntimeException e) {
            vcpu.close();
            throw e;
        }
    }

    private KvmCpuid cpuid() {
        if (cpuid == null) {
            cpuid = kvm.supportedCpuid();
        }
        return cpuid;
    }

    /** Writes page tables and the program into the reserved area (once: every vCPU runs the same code). */
    private void loadGuest(VcpuSetup setup) {
        MemorySegment ram = setup.ram().host();
        GuestCode.Layout l = new GuestCode.Layout(CODE_GPA, PAGE_TABLES_GPA, ram.byteSize());
        if (PAGE_TABLES_GPA + l.pageTablesBytes() > RESERVED_BYTES) {
            throw new IllegalArgumentException("guest RAM of " + ram.byteSize() + " bytes needs " + l.pageTablesBytes()
                    + " bytes of page tables, more than the reserved 2 MiB holds");
        }
        Workload w = setup.workload();
        if (w.pattern() != Pattern.IDLE) {
            GuestCode.Program program = new GuestCode.Program(guestPattern(w.pattern()), w.writeSize(),
                    pagesPerExit(w.pagesPerSecondPerVcpu(setup.vcpus())), KvmVcpuLoop.PACING_PORT);
            GuestCode.load(ram, 0, l, program);
            commitRip = l.codeGpa() + program.commitOffset();
        }
        layout = l;
        guestLoaded = true;
    }

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException("the kvm accelerator is closed");
        }
    }

    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        // From here on the listener ignores callbacks: unregistering replays logStop and regionDel
        // for every section, and deleting slots one by one is pointless when the VM goes away.
        closed = true;
        if (addressSpace != null) {
            addressSpace.unregisterListener(listener);
            addressSpace = null;
        }
        vm.close();
        kvm.close();
    }

    // ---- memory slots

    /** A section trimmed to whole pages, as kvm_align_section does; null if nothing is left. */
    private record Aligned(long gpa, long size, long offsetInBlock) {
    }

    private static Aligned align(MemorySection section) {
        long page = KvmVm.PAGE_SIZE;
        long start = Math.ceilDiv(section.address(), page) * page;
        long end = Math.floorDiv(section.end(), page) * page;
        if (end <= start) {
            return null;
        }
        long offset = section.offsetInBlock() + (start - section.address());
        if (offset % page != 0) {
            return null; // the block offset is not aligned like the address: KVM cannot map it
        }
        return new Aligned(start, end - start, offset);
    }

    private static MemorySegment host(RamBlock block, long offsetInBlock, long size) {
        return block.host().asSlice(offsetInBlock, size);
    }

    /**
     * Fetches a logging slot's dirty log and marks it in the RAM block (with the slot lock held),
     * before the slot is deleted or stops logging and KVM throws its log away. Under manual
     * protect this may mark again pages already reported and not yet cleared: harmless, they are
     * dirty in the RAM block's bitmaps already or will simply be sent once more.
     */
    private void flushSlotLog(KvmMemslot slot) {
        if (!slot.logging()) {
            return;
        }
        if (vm.dirtyRingBytes() > 0) {
            DirtyRingReaper reaper = dirtyRingReaper;
            if (reaper != null) {
                reaper.reap();
            }
            return;
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment bitmap = arena.allocate(KvmVm.bitmapBytes(slot.size()), 8);
            vm.getDirtyLog(slot.id(), bitmap);
            slot.ramBlock().setDirtyBitmap(slot.firstPage(), bitmap, slot.pages());
        }
    }

    /** Keeps KVM's memory slots in step with the flat view (QEMU's kvm_memory_listener). */
    private final class Memslots implements MemoryListener {

        @Override
        public String name() {
            return "kvm-memslots";
        }

        @Override
        public int priority() {
            return ACCEL_PRIORITY;
        }

        @Override
        public void regionAdd(MemorySection section) {
            if (closed || !section.isRam()) {
                return;
            }
            if (section.readOnly() && !readonlyMem) {
                return; // no slot: every access exits as MMIO and goes through the address space
            }
            Aligned a = align(section);
            if (a == null) {
                return;
            }
            int flags = (section.dirtyLogMask() != 0 ? KvmIoctls.KVM_MEM_LOG_DIRTY_PAGES : 0)
                    | (section.readOnly() ? KvmIoctls.KVM_MEM_READONLY : 0);
            RamBlock block = section.ramBlock().orElseThrow();
            memslots.lock().lock();
            try {
                KvmMemslot slot = memslots.add(section, a.gpa(), a.size(), a.offsetInBlock(), flags);
                try {
                    vm.setUserMemoryRegion(slot.id(), flags, a.gpa(), a.size(), host(block, a.offsetInBlock(), a.size()));
                } catch (RuntimeException e) {
                    memslots.remove(slot);
                    throw new IllegalStateException("KVM refused memory slot " + slot.id() + " for " + section
                            + ": " + e.getMessage(), e);
                }
            } finally {
                memslots.lock().unlock();
            }
        }

        @Override
        public void commit() {
            vm.runInhibitor().end(); // every slot of the new topology exists: the vCPUs may run again
        }

        @Override
        public void regionDel(MemorySection section) {
            if (closed || !section.isRam()) {
                return;
            }
            // From this deletion until the pass commits (the memory system calls commit even when
            // the pass fails), the vCPUs stay out of KVM_RUN, as QEMU's kvm_region_commit does: a
            // range without a slot cannot hold the guest's code or page tables even for a moment
            // (see KvmRunInhibitor).
            vm.runInhibitor().begin();
            deleteSlot(section);
        }

        private void deleteSlot(MemorySection section) {
            memslots.lock().lock();
            try {
                Optional<KvmMemslot> found = memslots.find(section);
                if (found.isEmpty()) {
                    return;
                }
                KvmMemslot slot = found.get();
                flushSlotLog(slot);
                vm.setUserMemoryRegion(slot.id(), 0, slot.gpa(), 0, MemorySegment.NULL);
                if (slot.logging() && vm.dirtyRingBytes() > 0) {
                    // Entries pushed between the reap above and the deletion are in the rings
                    // now (the deletion waits for every vCPU's SRCU reader); take them while the
                    // id still names this slot, before memslots.remove frees it for reuse.
                    flushSlotLog(slot);
                }
                memslots.remove(slot);
            } finally {
                memslots.lock().unlock();
            }
        }

        @Override
        public void logStart(MemorySection section, int oldMask, int newMask) {
            if (oldMask == 0) {
                updateLogging(section, true);
            }
        }

        @Override
        public void logStop(MemorySection section, int oldMask, int newMask) {
            if (newMask == 0) {
                updateLogging(section, false);
            }
        }

        private void updateLogging(MemorySection section, boolean log) {
            if (closed || !section.isRam()) {
                return;
            }
            memslots.lock().lock();
            try {
                Optional<KvmMemslot> found = memslots.find(section);
                if (found.isEmpty()) {
                    return; // no slot (unaligned or ROM without KVM_CAP_READONLY_MEM): the address space logs it
                }
                KvmMemslot slot = found.get();
                int flags = log ? slot.flags() | KvmIoctls.KVM_MEM_LOG_DIRTY_PAGES
                        : slot.flags() & ~KvmIoctls.KVM_MEM_LOG_DIRTY_PAGES;
                if (flags == slot.flags()) {
                    return; // kvm_slot_update_flags: nothing changed, no ioctl
                }
                if (!log) {
                    flushSlotLog(slot);
                }
                vm.setUserMemoryRegion(slot.id(), flags, slot.gpa(), slot.size(),
                        host(slot.ramBlock(), slot.offsetInBlock(), slot.size()));
                memslots.setFlags(slot, flags);
            } finally {
                memslots.lock().unlock();
            }
        }
    }
}
