package dev.ferry.machine.soft;

import java.lang.invoke.VarHandle;

import dev.ferry.api.MemorySection;
import dev.ferry.api.RamBlock;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.MemfdRamBlock;

/**
 * The software accelerator's view of one RAM section, like a KVM memslot: where it lies in its
 * RAM block, and the accelerator-side dirty log that guest writes mark while logging is on
 * (the counterpart of KVM_MEM_LOG_DIRTY_PAGES and the kernel's per-slot bitmap).
 */
public final class SoftMemslot {

    private final MemorySection section;
    private final MemfdRamBlock block;
    private final long firstPage;
    private final long pages;
    private final DirtyBitmap log;
    private volatile boolean logging;
    private volatile boolean retired;

    SoftMemslot(MemorySection section, MemfdRamBlock block) {
        this.section = section;
        this.block = block;
        this.firstPage = section.offsetInBlock() / block.pageSize();
        this.pages = section.size() / block.pageSize();
        this.log = new DirtyBitmap(pages);
    }

    /** @return the section this slot maps */
    public MemorySection section() {
        return section;
    }

    /** @return the RAM block behind it */
    public MemfdRamBlock block() {
        return block;
    }

    /** @return the slot's first page within its block */
    public long firstPage() {
        return firstPage;
    }

    /** @return the number of pages in the slot */
    public long pages() {
        return pages;
    }

    boolean contains(long blockPage) {
        return blockPage >= firstPage && blockPage < firstPage + pages;
    }

    boolean logging() {
        return logging;
    }

    void setLogging(boolean on) {
        if (on && !logging) {
            log.clearAll();
        }
        logging = on;
    }

    /** A guest write to page {@code blockPage} of the block; call after the write. */
    void markWritten(long blockPage) {
        // Order the guest's store before the read of the logging flag: otherwise the store
        // could become visible after a migration that has just turned logging on has read the
        // page, while this vCPU still saw logging off (KVM gets the same order from the exit
        // every vCPU takes when a memslot's flags change).
        VarHandle.fullFence();
        if (logging) {
            log.set(blockPage - firstPage);
        }
        if (retired) {
            // The slot went away after this vCPU picked it: its final sync may have missed the
            // mark, and a slot that replaced it may be logging while this one never will be
            // (logStart only reaches current slots). Report the page straight to the block,
            // whose own mask decides (KVM uses SRCU for this).
            block.setDirtyPage(blockPage);
        }
    }

    /** The slot is being removed: later marks go to the block directly. */
    void retire() {
        retired = true;
    }

    /** @return whether the slot was removed; a vCPU must look its page up again */
    boolean retired() {
        return retired;
    }

    /**
     * Takes the slot's log, clearing it, and marks the pages in the RAM block's dirty bitmaps:
     * the software equivalent of KVM_GET_DIRTY_LOG plus the fold into memory-core.
     *
     * @return the number of pages reported
     */
    public long syncInto(RamBlock target) {
        long reported = 0;
        int words = log.wordCount();
        for (int w = 0; w < words; w++) {
            // Plain read first: a sparse log is mostly zero words, which need no atomic.
            if (log.word(w) != 0) {
                long bits = log.takeWord(w);
                reported += Long.bitCount(bits);
                target.setDirtyWord(firstPage + ((long) w << 6), bits);
            }
        }
        return reported;
    }
}
