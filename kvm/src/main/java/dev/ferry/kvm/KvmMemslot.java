package dev.ferry.kvm;

import dev.ferry.api.MemorySection;
import dev.ferry.api.RamBlock;

/**
 * One KVM memory slot as the accelerator registered it (QEMU's {@code KVMSlot}): which slot id,
 * which guest-physical range, and which pages of which {@link RamBlock} back it. Trackers use it
 * to turn a slot-relative dirty bitmap into RAM block pages: bit {@code n} of the slot's log is
 * page {@link #firstPage()} {@code + n} of {@link #ramBlock()}.
 *
 * <p>The mapping is fixed for the slot's life; only the flags change (dirty logging on and off).
 * Read and act on slots while holding {@link KvmMemslots#lock()}: a removed slot's id is reused
 * by the next slot added.
 */
public final class KvmMemslot {

    private final int id;
    private final MemorySection section;
    private final long gpa;
    private final long size;
    private final RamBlock ramBlock;
    private final long offsetInBlock;
    private volatile int flags;
    private volatile long logGeneration;
    private volatile boolean removed;

    KvmMemslot(int id, MemorySection section, long gpa, long size, long offsetInBlock, int flags) {
        this.id = id;
        this.section = section;
        this.gpa = gpa;
        this.size = size;
        this.ramBlock = section.ramBlock().orElseThrow(
                () -> new IllegalArgumentException("memory slot for non-RAM section " + section));
        this.offsetInBlock = offsetInBlock;
        this.flags = flags;
        this.logGeneration = (flags & KvmIoctls.KVM_MEM_LOG_DIRTY_PAGES) != 0 ? 1 : 0;
    }

    /** @return the slot id given to KVM (address space 0) */
    public int id() {
        return id;
    }

    /** @return the flat-view section the slot maps (its dirty-log mask as when the slot was made) */
    public MemorySection section() {
        return section;
    }

    /** @return the guest-physical address of the slot's first byte */
    public long gpa() {
        return gpa;
    }

    /** @return the slot's size in bytes, a multiple of {@link KvmVm#PAGE_SIZE} */
    public long size() {
        return size;
    }

    /** @return the number of pages in the slot, i.e. bits in its dirty log */
    public long pages() {
        return size / KvmVm.PAGE_SIZE;
    }

    /** @return the RAM block backing the slot */
    public RamBlock ramBlock() {
        return ramBlock;
    }

    /** @return byte offset of the slot's first byte within {@link #ramBlock()} */
    public long offsetInBlock() {
        return offsetInBlock;
    }

    /** @return the RAM block page that bit 0 of the slot's dirty log stands for */
    public long firstPage() {
        return offsetInBlock / KvmVm.PAGE_SIZE;
    }

    /** @return the kvm_userspace_memory_region flags currently set */
    public int flags() {
        return flags;
    }

    /** @return whether KVM_MEM_LOG_DIRTY_PAGES is set, so KVM keeps a dirty log for the slot */
    public boolean logging() {
        return (flags & KvmIoctls.KVM_MEM_LOG_DIRTY_PAGES) != 0;
    }

    /**
     * Counts the times dirty logging was switched on for this slot. KVM throws the slot's log
     * away when logging stops and starts a new one (all set under KVM_DIRTY_LOG_INITIALLY_SET)
     * when it starts again, so anything a tracker cached about the log is stale once this changes.
     *
     * @return the logging generation, 0 if logging was never on
     */
    public long logGeneration() {
        return logGeneration;
    }

    /** @return whether the slot has been deleted from KVM; its id may belong to another slot now */
    public boolean removed() {
        return removed;
    }

    /** @return whether {@code blockPage} of the slot's RAM block lies in the slot */
    public boolean containsBlockPage(long blockPage) {
        return blockPage >= firstPage() && blockPage < firstPage() + pages();
    }

    void setFlags(int newFlags) {
        boolean wasLogging = logging();
        flags = newFlags;
        if (!wasLogging && logging()) {
            logGeneration++;
        }
    }

    void markRemoved() {
        removed = true;
    }

    @Override
    public String toString() {
        return String.format("memslot %d [0x%x, 0x%x) -> %s+0x%x%s", id, gpa, gpa + size, ramBlock.name(),
                offsetInBlock, logging() ? " log" : "");
    }
}
