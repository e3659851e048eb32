package dev.ferry.kvm.dirtylog;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * One KVM_CLEAR_DIRTY_LOG request for part of a slot, computed as QEMU's kvm_log_clear_one_slot
 * (accel/kvm/kvm-all.c) does.
 *
 * <p>The kernel wants {@code first_page} a multiple of 64 and {@code num_pages} a multiple of 64
 * or reaching the end of the slot (kvm_clear_dirty_log_protect returns EINVAL otherwise). So the
 * range asked for, {@code [startPage, startPage + pages)}, is widened: the start down to a
 * multiple of 64 ({@link #startDelta()} pages earlier), the length up to a multiple of 64, capped
 * at the slot's end.
 *
 * <p>Widening must not clear more than was asked, nor anything not yet fetched: a bit set in the
 * kernel's log that the last KVM_GET_DIRTY_LOG did not return is a page written since, which
 * nobody has reported; clearing it would lose the page. The kernel clears only the bits set in
 * the bitmap it is given (clear_bit for each set bit, then re-protects those pages), so the
 * bitmap passed is {@link #buildMask}: the bits of the tracker's copy of the last fetched log
 * that lie inside the range asked for, and zero in the widened margins. After the ioctl the same
 * bits are cleared from the copy ({@link #clearFetched}), so a second clear of the same range
 * before the next fetch clears nothing (QEMU: "if another user clears the same region we know we
 * shouldn't clear it again on the remote otherwise it's data loss as well").
 *
 * @param firstPage  kvm_clear_dirty_log.first_page: slot page, a multiple of 64
 * @param numPages   kvm_clear_dirty_log.num_pages: a multiple of 64, or reaching the slot's end
 * @param startDelta pages between {@code firstPage} and the first page asked for (0 to 63)
 * @param pages      pages asked for
 */
public record ClearRange(long firstPage, int numPages, int startDelta, long pages) {

    private static final ValueLayout.OfLong WORD = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** KVM_CLEAR_LOG_SHIFT: the kernel's alignment is 64 pages. */
    static final int ALIGN_SHIFT = 6;

    /**
     * @param slotPages pages in the slot
     * @param startPage first slot page to clear
     * @param pages     pages to clear, at least 1; {@code startPage + pages <= slotPages}
     * @return the request
     * @throws IllegalArgumentException if the range is not inside the slot
     */
    public static ClearRange of(long slotPages, long startPage, long pages) {
        if (startPage < 0 || pages <= 0 || startPage + pages > slotPages) {
            throw new IllegalArgumentException("pages [" + startPage + ", +" + pages + ") are not inside a slot of "
                    + slotPages + " pages");
        }
        long bmapStart = startPage & -(1L << ALIGN_SHIFT);
        long delta = startPage - bmapStart;
        long npages = Math.ceilDiv(pages + delta, 1L << ALIGN_SHIFT) << ALIGN_SHIFT;
        npages = Math.min(npages, slotPages - bmapStart);
        if (npages > 0xFFFF_FFFFL || npages > Integer.MAX_VALUE) {
            // kvm_clear_dirty_log.num_pages is a u32; QEMU asserts it. Callers clear in chunks.
            throw new IllegalArgumentException("cannot clear " + npages + " pages in one KVM_CLEAR_DIRTY_LOG");
        }
        return new ClearRange(bmapStart, (int) npages, (int) delta, pages);
    }

    /** @return whether the request is exactly the range asked for (QEMU's fast path) */
    public boolean exact() {
        return startDelta == 0 && numPages == pages;
    }

    /** @return the 64-bit words of the bitmap the kernel reads for this request */
    public int words() {
        return (int) Math.ceilDiv(numPages, 64L);
    }

    /** @return the mask of the bits of word {@code k} of the request that lie in the range asked for */
    private long wordMask(int k) {
        long lo = Math.max(0, startDelta - 64L * k);
        long hi = Math.min(64, startDelta + pages - 64L * k);
        if (hi <= lo) {
            return 0;
        }
        long width = hi - lo;
        return (width == 64 ? -1L : (1L << width) - 1) << lo;
    }

    /**
     * Writes the KVM_CLEAR_DIRTY_LOG bitmap: the bits of {@code fetched} (the slot's last fetched
     * log, bit n = slot page n) in the range asked for, nothing else.
     *
     * @param fetched the slot's log as last fetched, whole words for the whole slot
     * @param out     at least {@link #words()} words; bit n = page {@link #firstPage()} + n
     * @return the number of bits set in {@code out} (0: the ioctl would clear nothing)
     */
    public long buildMask(MemorySegment fetched, MemorySegment out) {
        long base = firstPage >>> 6;
        long count = 0;
        for (int k = 0; k < words(); k++) {
            long bits = fetched.get(WORD, (base + k) * 8) & wordMask(k);
            out.set(WORD, k * 8L, bits);
            count += Long.bitCount(bits);
        }
        return count;
    }

    /** Clears the range asked for from the fetched copy, once the kernel has cleared it. */
    public void clearFetched(MemorySegment fetched) {
        long base = firstPage >>> 6;
        for (int k = 0; k < words(); k++) {
            long mask = wordMask(k);
            if (mask != 0) {
                long at = (base + k) * 8;
                fetched.set(WORD, at, fetched.get(WORD, at) & ~mask);
            }
        }
    }
}
