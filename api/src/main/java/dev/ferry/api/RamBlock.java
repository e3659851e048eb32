package dev.ferry.api;

import java.lang.foreign.MemorySegment;
import java.util.OptionalInt;

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
     * The file descriptor behind {@link #host()}, for a tracker or backend that maps the block
     * itself or hands it to another process (as QEMU hands a vhost-user backend its memory
     * table). The engine owns it: do not close it. Writes through another mapping of it are
     * invisible to trackers that watch {@link #host()}'s mapping (userfaultfd, page tables).
     *
     * @return the descriptor, absent for memory that has none
     */
    default OptionalInt fd() {
        return OptionalInt.empty();
    }

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

    /**
     * Marks dirty the pages of one 64-bit word of a dirty log: bit {@code i} of {@code bits} is
     * page {@code firstPage + i}. A tracker folding its own log a word at a time calls this for
     * each non-zero word; the engine's blocks OR the word in without a loop over bits.
     *
     * @param firstPage page index within the block of bit 0
     * @param bits      the word; set bits beyond the block's last page are an error
     * @throws IndexOutOfBoundsException if a set bit lies beyond the block
     */
    default void setDirtyWord(long firstPage, long bits) {
        long pageSize = pageSize();
        long rest = bits;
        while (rest != 0) {
            int first = Long.numberOfTrailingZeros(rest);
            // The run of ones starting at bit 'first'.
            int run = Long.numberOfTrailingZeros(~(rest >>> first));
            if (first + run > 64) {
                run = 64 - first;
            }
            setDirty((firstPage + first) * pageSize, run * pageSize);
            rest = first + run >= 64 ? 0 : rest & (-1L << (first + run));
        }
    }
}
