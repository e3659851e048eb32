package dev.ferry.memory;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * A bitmap of pages, one bit per page, safe for concurrent setters. Every operation works a
 * 64-bit word at a time; setting a bit is one atomic OR, so marking from vCPU threads, backend
 * workers and tracker syncs needs no lock. Bit {@code p % 64} of word {@code p / 64} is page
 * {@code p}, the same order as KVM's little-endian dirty bitmaps, so those fold in word by word.
 */
public final class DirtyBitmap {

    private static final VarHandle WORD = MethodHandles.arrayElementVarHandle(long[].class);
    private static final ValueLayout.OfLong LE_WORD =
            ValueLayout.JAVA_LONG_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN);

    private final long[] words;
    private final long pages;

    /** @param pages the number of pages the bitmap covers */
    public DirtyBitmap(long pages) {
        if (pages < 0 || (pages + 63) / 64 > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("bitmap of " + pages + " pages");
        }
        this.pages = pages;
        this.words = new long[(int) ((pages + 63) >>> 6)];
    }

    /** @return the number of pages covered */
    public long pages() {
        return pages;
    }

    /** @return the number of 64-bit words */
    public int wordCount() {
        return words.length;
    }

    private void check(long page) {
        if (page < 0 || page >= pages) {
            throw new IndexOutOfBoundsException("page " + page + " outside bitmap of " + pages + " pages");
        }
    }

    private void checkRange(long first, long count) {
        if (first < 0 || count < 0 || first + count > pages) {
            throw new IndexOutOfBoundsException("pages [" + first + ", +" + count + ") outside bitmap of "
                    + pages + " pages");
        }
    }

    /** Sets one page's bit. @return whether it was clear before */
    public boolean set(long page) {
        check(page);
        long bit = 1L << page;
        return ((long) WORD.getAndBitwiseOr(words, (int) (page >>> 6), bit) & bit) == 0;
    }

    /** @return whether the page's bit is set */
    public boolean get(long page) {
        check(page);
        return ((long) WORD.getOpaque(words, (int) (page >>> 6)) & (1L << page)) != 0;
    }

    /** Clears one page's bit. @return whether it was set before */
    public boolean testAndClear(long page) {
        check(page);
        long bit = 1L << page;
        return ((long) WORD.getAndBitwiseAnd(words, (int) (page >>> 6), ~bit) & bit) != 0;
    }

    /**
     * Sets {@code count} pages from {@code first}.
     *
     * @return the number of bits that were clear before
     */
    public long setRange(long first, long count) {
        return overRange(first, count, RangeOp.SET);
    }

    /**
     * Clears {@code count} pages from {@code first}.
     *
     * @return the number of bits that were set before
     */
    public long clearRange(long first, long count) {
        return overRange(first, count, RangeOp.CLEAR);
    }

    private enum RangeOp { SET, CLEAR, COUNT }

    /**
     * Applies {@code op} to {@code [first, first + count)} a word at a time, with a mask for the
     * partial words at either end.
     *
     * @return for SET the bits newly set, for CLEAR the bits that were set, for COUNT the set bits
     */
    private long overRange(long first, long count, RangeOp op) {
        checkRange(first, count);
        long n = 0;
        long page = first;
        long end = first + count;
        while (page < end) {
            int w = (int) (page >>> 6);
            int lo = (int) (page & 63);
            int len = (int) Math.min(64 - lo, end - page);
            long mask = (len == 64 ? -1L : ((1L << len) - 1)) << lo;
            n += switch (op) {
                case SET -> Long.bitCount(mask & ~(long) WORD.getAndBitwiseOr(words, w, mask));
                case CLEAR -> Long.bitCount(mask & (long) WORD.getAndBitwiseAnd(words, w, ~mask));
                case COUNT -> Long.bitCount(mask & (long) WORD.getOpaque(words, w));
            };
            page += len;
        }
        return n;
    }

    /** Sets every page. */
    public void setAll() {
        setRange(0, pages);
    }

    /** Clears every page. */
    public void clearAll() {
        clearRange(0, pages);
    }

    /** @return the number of set bits */
    public long count() {
        long n = 0;
        for (int i = 0; i < words.length; i++) {
            n += Long.bitCount((long) WORD.getOpaque(words, i));
        }
        return n;
    }

    /** @return the number of set bits in {@code [first, first + count)} */
    public long count(long first, long count) {
        return overRange(first, count, RangeOp.COUNT);
    }

    /**
     * @return the first set page at or after {@code from}, or -1 if none
     */
    public long nextSetBit(long from) {
        from = Math.max(from, 0); // a negative start means from the first page
        if (from >= pages) {
            return -1;
        }
        int w = (int) (from >>> 6);
        long word = (long) WORD.getOpaque(words, w) & (-1L << from);
        while (true) {
            if (word != 0) {
                long page = ((long) w << 6) + Long.numberOfTrailingZeros(word);
                return page < pages ? page : -1;
            }
            if (++w == words.length) {
                return -1;
            }
            word = (long) WORD.getOpaque(words, w);
        }
    }

    /** @return the 64 bits of word {@code index} */
    public long word(int index) {
        return (long) WORD.getOpaque(words, index);
    }

    /** Atomically replaces word {@code index} with zero. @return its bits */
    public long takeWord(int index) {
        return (long) WORD.getAndSet(words, index, 0L);
    }

    /**
     * ORs bits into word {@code index}.
     *
     * @return the number of bits that were clear before
     */
    public int orWord(int index, long bits) {
        if (bits == 0) {
            return 0;
        }
        long old = (long) WORD.getAndBitwiseOr(words, index, bits);
        return Long.bitCount(bits & ~old);
    }

    /**
     * ORs 64 bits into the bitmap at any page: bit {@code i} of {@code bits} marks page
     * {@code firstPage + i}. Bits past the end of the bitmap must be clear.
     *
     * @return the number of pages newly set
     */
    public int orBits(long firstPage, long bits) {
        if (bits == 0) {
            return 0;
        }
        long last = firstPage + 63 - Long.numberOfLeadingZeros(bits);
        if (firstPage < 0 || last >= pages) {
            throw new IndexOutOfBoundsException("page " + Math.max(last, firstPage) + " outside bitmap of " + pages + " pages");
        }
        int w = (int) (firstPage >>> 6);
        int shift = (int) (firstPage & 63);
        if (shift == 0) {
            return orWord(w, bits);
        }
        return orWord(w, bits << shift) + orWord(w + 1, bits >>> (64 - shift));
    }

    /**
     * Moves every set bit of this bitmap into {@code dest} and clears it here, word by word,
     * each word atomically (so no concurrent mark is lost: it lands either in {@code dest} now
     * or stays here for the next call). Both bitmaps must cover the same pages.
     *
     * @return the number of pages newly set in {@code dest}
     */
    public long drainInto(DirtyBitmap dest) {
        if (dest.pages != pages) {
            throw new IllegalArgumentException("bitmaps differ in size: " + pages + " vs " + dest.pages);
        }
        long added = 0;
        for (int i = 0; i < words.length; i++) {
            // Plain read first: most words of a sparse bitmap are zero; skip the atomic then.
            if ((long) WORD.getOpaque(words, i) != 0) {
                added += dest.orWord(i, (long) WORD.getAndSet(words, i, 0L));
            }
        }
        return added;
    }

    /**
     * ORs a little-endian bitmap in KVM's format into this one: bit {@code i} of 64-bit word
     * {@code w} of {@code src} marks page {@code firstPage + 64 * w + i}.
     *
     * @return the number of pages newly set
     */
    public long orLittleEndian(long firstPage, MemorySegment src, long count) {
        checkRange(firstPage, count);
        if (src.byteSize() < ((count + 63) >>> 6) * 8) {
            throw new IllegalArgumentException("bitmap of " + src.byteSize() + " bytes is too short for "
                    + count + " pages");
        }
        long added = 0;
        long fullWords = count >>> 6;
        int shift = (int) (firstPage & 63);
        int base = (int) (firstPage >>> 6);
        if (shift == 0) {
            for (long i = 0; i < fullWords; i++) {
                long bits = src.get(LE_WORD, i << 3);
                if (bits != 0) {
                    added += orWord(base + (int) i, bits);
                }
            }
        } else {
            // Unaligned start: each source word straddles two destination words.
            for (long i = 0; i < fullWords; i++) {
                long bits = src.get(LE_WORD, i << 3);
                if (bits != 0) {
                    int w = base + (int) i;
                    added += orWord(w, bits << shift);
                    added += orWord(w + 1, bits >>> (64 - shift));
                }
            }
        }
        long rest = count & 63;
        if (rest != 0) {
            long bits = src.get(LE_WORD, fullWords << 3) & ((1L << rest) - 1);
            long page = firstPage + (fullWords << 6);
            while (bits != 0) {
                int b = Long.numberOfTrailingZeros(bits);
                if (set(page + b)) {
                    added++;
                }
                bits &= bits - 1;
            }
        }
        return added;
    }
}
