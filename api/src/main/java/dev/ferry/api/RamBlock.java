package dev.ferry.api;

import java.lang.foreign.MemorySegment;

/**
 * A block of guest RAM: host memory that backs one or more RAM regions, with a dirty bitmap per
 * {@link DirtyClient} (QEMU's {@code RAMBlock}).
 *
 * <p>Trackers report dirty pages here. Marking is idempotent and thread-safe; marks go to every
 * client that is currently logging. Offsets are bytes from the start of the block; pages are
 * {@link #pageSize()} bytes.
 */
public interface RamBlock {

    /** @return the block's unique name, e.g. {@code "pc.ram"} (QEMU's idstr) */
    String name();

    /** @return the block's size in bytes, a multiple of {@link #pageSize()} */
    long size();

    /** @return the target page size in bytes (4096) */
    default int pageSize() {
        return 4096;
    }

    /** @return the number of pages in the block */
    default long pages() {
        return size() / pageSize();
    }

    /**
     * The host memory of the block: shared memory that an accelerator may hand to the kernel
     * (KVM memslots) or to another process. Writing through it directly bypasses dirty tracking;
     * that is what a guest or a DMA engine does, and what trackers exist to catch.
     *
     * @return the block's memory, {@link #size()} bytes long
     */
    MemorySegment host();

    /**
     * Marks the pages overlapping {@code [offset, offset + length)} dirty.
     *
     * @param offset byte offset within the block
     * @param length length in bytes
     * @throws IndexOutOfBoundsException if the range is not within the block
     */
    void setDirty(long offset, long length);

    /**
     * Marks dirty every page whose bit is set in a little-endian bitmap, in the format of
     * {@code KVM_GET_DIRTY_LOG}: bit {@code i} of 64-bit word {@code w} stands for page
     * {@code firstPage + 64 * w + i}. The bitmap is folded a word at a time.
     *
     * @param firstPage page index within the block of bit 0
     * @param bitmap    the bitmap, at least {@code ceil(pages / 64)} words
     * @param pages     number of pages the bitmap covers
     * @return the number of pages that were newly marked dirty for the migration client
     */
    long setDirtyBitmap(long firstPage, MemorySegment bitmap, long pages);
}
