package dev.ferry.migration.ram;

import dev.ferry.memory.AddressSpace;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.MemfdRamBlock;
import dev.ferry.memory.MemorySystem;
import dev.ferry.migration.stream.QemuFormat;
import dev.ferry.migration.stream.StreamWriter;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.LongSupplier;

/**
 * The source side of RAM migration (QEMU's migration/ram.c, save half): the migration bitmap
 * per RAM block, the send loop, zero-page detection, bitmap sync, and free-page hints.
 *
 * <p><b>The bitmap lock (seed 002).</b> One lock guards every migration bitmap and the dirty
 * page count. The send loop takes it once per burst (bounded to about 50 ms, like
 * ram_save_iterate's MAX_WAIT), not once per page; bitmap sync and free-page hints take the same
 * lock, so a hint that races the send loop waits at most one burst.
 *
 * <p><b>Clear bitmap.</b> With trackers that defer write-protection (KVM manual protect), each
 * block's pages are grouped in chunks of {@code 2^clearBitmapShift} pages. After a sync every
 * chunk is marked; the first page sent from a marked chunk first asks the listeners to clear the
 * chunk's dirty log (logClear), so the guest is re-protected just before its pages leave and
 * never all at once (QEMU's clear_bmap).
 */
public final class RamSaver {

    /** QEMU's default clear-bitmap-shift: 2^18 pages of 4 KiB = 1 GiB chunks. */
    public static final int DEFAULT_CLEAR_BITMAP_SHIFT = 18;

    private final MemorySystem memory;
    private final AddressSpace addressSpace;
    private final List<BlockState> blocks = new ArrayList<>();
    private final ReentrantLock bitmapLock = new ReentrantLock();
    private final int clearBitmapShift;
    private final LockMode lockMode;
    private long dirtyPages;
    private int cursorBlock;
    private long lockAcquisitions;

    // Counters (QEMU's ram_counters); written by the sending thread only.
    private long normalPages;
    private long zeroPages;

    private static final class BlockState {
        final MemfdRamBlock block;
        final DirtyBitmap bitmap;
        final DirtyBitmap clearBitmap;
        /** The block's name as the stream carries it. */
        final byte[] idstr;
        long cursor;
        /** The dirty bits the send loop took from the word just before the cursor. */
        long taken;

        BlockState(MemfdRamBlock block, int clearShift) {
            this.block = block;
            this.bitmap = new DirtyBitmap(block.pages());
            this.clearBitmap = new DirtyBitmap(((block.pages() - 1) >> clearShift) + 1);
            this.idstr = block.name().getBytes(StandardCharsets.UTF_8);
        }
    }

    /** How often the send loop takes the bitmap lock. */
    public enum LockMode {
        /** Once per burst (seed 002): what Ferry does. */
        PER_BURST,
        /** Once per page, as QEMU did before seed 002: the benchmark's baseline. */
        PER_PAGE
    }

    /**
     * @param clearBitmapShift log2 of pages per clear chunk (QEMU's clear-bitmap-shift, 6 to 31)
     */
    public RamSaver(MemorySystem memory, AddressSpace addressSpace, int clearBitmapShift) {
        this(memory, addressSpace, clearBitmapShift, LockMode.PER_BURST);
    }

    /**
     * @param clearBitmapShift log2 of pages per clear chunk (QEMU's clear-bitmap-shift, 6 to 31)
     * @param lockMode         how often the send loop takes the bitmap lock
     */
    public RamSaver(MemorySystem memory, AddressSpace addressSpace, int clearBitmapShift, LockMode lockMode) {
        this.lockMode = lockMode;
        if (clearBitmapShift < 6 || clearBitmapShift > 31) {
            throw new IllegalArgumentException("clear-bitmap-shift must be 6 to 31, got " + clearBitmapShift);
        }
        this.memory = memory;
        this.addressSpace = addressSpace;
        this.clearBitmapShift = clearBitmapShift;
        for (MemfdRamBlock b : memory.ramBlocks()) {
            blocks.add(new BlockState(b, clearBitmapShift));
        }
    }

    /** @return the RAM blocks being migrated */
    public List<MemfdRamBlock> ramBlocks() {
        return blocks.stream().map(s -> s.block).toList();
    }

    /** @return total guest RAM in bytes */
    public long totalBytes() {
        long n = 0;
        for (BlockState s : blocks) {
            n += s.block.size();
        }
        return n;
    }

    /**
     * Starts: every page is dirty (the first pass sends all RAM), and the setup part of the RAM
     * section lists the blocks (ram_save_setup).
     */
    public void setup(StreamWriter out) throws IOException {
        bitmapLock.lock();
        try {
            dirtyPages = 0;
            for (BlockState s : blocks) {
                s.bitmap.setAll();
                s.clearBitmap.setAll();
                s.cursor = 0;
                dirtyPages += s.block.pages();
            }
        } finally {
            bitmapLock.unlock();
        }
        out.put64(totalBytes() | QemuFormat.RAM_FLAG_MEM_SIZE);
        for (BlockState s : blocks) {
            out.putString8(s.block.name());
            out.put64(s.block.size());
        }
        out.put64(QemuFormat.RAM_FLAG_EOS);
    }

    /** @return dirty pages still to send */
    public long remainingPages() {
        bitmapLock.lock();
        try {
            return dirtyPages;
        } finally {
            bitmapLock.unlock();
        }
    }

    /** @return pages sent in full so far */
    public long normalPages() {
        return normalPages;
    }

    /** @return zero pages sent as a flag so far */
    public long zeroPages() {
        return zeroPages;
    }

    /** @return how many times the send loop took the bitmap lock */
    public long lockAcquisitions() {
        return lockAcquisitions;
    }

    /**
     * Sends dirty pages until none is left, {@code deadline} (System.nanoTime) passes, or
     * {@code budget} says the bandwidth for this period is spent. Takes the bitmap lock once.
     * Ends with the RAM section's EOS.
     *
     * @param budget bytes that may still be written in this rate-limit period ({@code Long.MAX_VALUE}
     *               for no limit), read against {@link StreamWriter#position()}
     * @return true if every dirty page was sent
     */
    public boolean sendBurst(StreamWriter out, long deadline, LongSupplier budget) throws IOException {
        long limit = out.position() + budget.getAsLong();
        if (limit < 0) {
            limit = Long.MAX_VALUE;
        }
        // Two loops rather than one with a flag, so each keeps its own compiled code and profile.
        boolean done = lockMode == LockMode.PER_BURST ? sendLockedOnce(out, deadline, limit)
                : sendLockingPerPage(out, deadline, limit);
        out.put64(QemuFormat.RAM_FLAG_EOS);
        return done;
    }

    /**
     * The burst's loop, a bitmap word at a time: the lock is held throughout, so the dirty bits
     * of a whole word are taken at once (one atomic operation and one clear-bitmap check per 64
     * pages, not two atomic operations per page), and those a burst ends before sending are put
     * back.
     */
    private boolean sendLockedOnce(StreamWriter out, long deadline, long limit) throws IOException {
        bitmapLock.lock();
        lockAcquisitions++;
        try {
            MemfdRamBlock lastSent = null;
            int checked = 0;
            while (true) {
                if (out.position() >= limit) {
                    return false;
                }
                BlockState s = takeNextDirtyWord();
                if (s == null) {
                    return true;
                }
                long bits = s.taken;
                long base = s.cursor - 64;
                while (bits != 0) {
                    // The budget is checked before every page (position() is cheap), so a burst
                    // overshoots max-bandwidth by one page at most; the clock only every 64 pages.
                    if (out.position() >= limit || (++checked & 63) == 0 && System.nanoTime() >= deadline) {
                        dirtyPages += s.bitmap.orWord((int) (base >>> 6), bits);
                        s.cursor = base + Long.numberOfTrailingZeros(bits);
                        return false;
                    }
                    long page = base + Long.numberOfTrailingZeros(bits);
                    bits &= bits - 1;
                    savePage(out, s, page, s.block == lastSent);
                    lastSent = s.block;
                }
            }
        } finally {
            bitmapLock.unlock();
        }
    }

    /**
     * Takes the dirty bits of the word holding the next dirty page from the cursor (all of them:
     * bits below the cursor in that word are dirty pages too), after the log clear of its
     * chunk; a word never spans two chunks, since the clear-bitmap shift is at least 6 (QEMU's
     * minimum, for this reason). The bitmap lock is held.
     *
     * @return the block, with the bits in {@code taken} and its cursor just past the word; null
     *         if no page is dirty
     */
    private BlockState takeNextDirtyWord() {
        BlockState s = seekDirtyPage();
        if (s == null) {
            return null;
        }
        logClearBeforeSending(s, s.cursor);
        int word = (int) (s.cursor >>> 6);
        s.taken = s.bitmap.takeWord(word);
        dirtyPages -= Long.bitCount(s.taken);
        s.cursor = ((long) word + 1) << 6;
        return s;
    }

    /**
     * Moves the cursor to the next dirty page, going on to the next block at the end of one;
     * the bitmap lock is held. One sweep (the rest of this block, every other block, this one
     * from its start) finds every dirty bit: a count that still says some are dirty after it
     * disagrees with the bitmaps, and going round again would spin under the bitmap lock for
     * ever, blocking syncs and free-page hints.
     *
     * @return the block holding it, its cursor on the page; null if no page is dirty
     */
    private BlockState seekDirtyPage() {
        int emptyScans = 0;
        while (dirtyPages > 0) {
            BlockState s = blocks.get(cursorBlock);
            long page = s.bitmap.nextSetBit(s.cursor);
            if (page >= 0) {
                s.cursor = page;
                return s;
            }
            if (++emptyScans > blocks.size()) {
                throw new IllegalStateException("the RAM saver counts " + dirtyPages + " dirty pages but "
                        + "its bitmaps hold none: the migration cannot know what to send; stopping it");
            }
            s.cursor = 0;
            cursorBlock = (cursorBlock + 1) % blocks.size();
        }
        return null;
    }

    /** QEMU before seed 002: the lock is taken for each page's bit. */
    private boolean sendLockingPerPage(StreamWriter out, long deadline, long limit) throws IOException {
        MemfdRamBlock lastSent = null;
        int checked = 0;
        while (true) {
            if (out.position() >= limit || (++checked & 63) == 0 && System.nanoTime() >= deadline) {
                return false;
            }
            BlockState s;
            bitmapLock.lock();
            lockAcquisitions++;
            try {
                s = nextDirtyPage();
            } finally {
                bitmapLock.unlock();
            }
            if (s == null) {
                return true;
            }
            savePage(out, s, s.cursor - 1, s.block == lastSent);
            lastSent = s.block;
        }
    }

    /**
     * Finds the next dirty page from the cursor and clears its bit; the bitmap lock is held.
     *
     * @return the block holding it, whose cursor is one past the page; null if none is dirty
     */
    private BlockState nextDirtyPage() {
        BlockState s = seekDirtyPage();
        if (s == null) {
            return null;
        }
        long page = s.cursor++;
        clearDirty(s, page);
        return s;
    }

    /** For tests: makes the dirty count disagree with the bitmaps, as a bug would. */
    void miscountForTest(long pages) {
        bitmapLock.lock();
        try {
            dirtyPages += pages;
        } finally {
            bitmapLock.unlock();
        }
    }

    /** QEMU's migration_bitmap_clear_dirty, with the lock already held by the caller. */
    private void clearDirty(BlockState s, long page) {
        logClearBeforeSending(s, page);
        if (s.bitmap.testAndClear(page)) {
            dirtyPages--;
        }
    }

    /** The first page sent from a chunk marked in the clear bitmap clears the chunk's dirty log first. */
    private void logClearBeforeSending(BlockState s, long page) {
        long chunk = page >>> clearBitmapShift;
        if (s.clearBitmap.testAndClear(chunk)) {
            long chunkBytes = (long) s.block.pageSize() << clearBitmapShift;
            long start = chunk * chunkBytes;
            addressSpace.logClear(s.block, start, Math.min(chunkBytes, s.block.size() - start));
        }
    }

    private void savePage(StreamWriter out, BlockState s, long page, boolean sameBlock) throws IOException {
        MemfdRamBlock block = s.block;
        // The page's offset in the block rather than a slice of it: a page costs no allocation.
        if (out.putRamPage(block.host(), page * block.pageSize(), block.pageSize(), sameBlock ? null : s.idstr)) {
            zeroPages++;
        } else {
            normalPages++;
        }
    }

    /**
     * Syncs the dirty log of every tracker and folds it into the migration bitmaps, under the
     * bitmap lock (QEMU's migration_bitmap_sync).
     *
     * @return pages that became dirty since the previous sync
     */
    public long sync(boolean lastStage) {
        memory.globalDirtyLogSync(lastStage);
        bitmapLock.lock();
        try {
            long added = 0;
            for (BlockState s : blocks) {
                added += s.block.syncDirtyBitmap(s.bitmap);
                s.clearBitmap.setAll();
            }
            dirtyPages += added;
            return added;
        } finally {
            bitmapLock.unlock();
        }
    }

    /**
     * The guest says {@code [offset, offset + length)} of {@code block} is free: its pages need
     * not be sent (QEMU's qemu_guest_free_page_hint). Only whole pages are dropped. Safe to call
     * from any thread while the migration runs; waits for the current send burst.
     *
     * @return the number of dirty pages dropped
     */
    public long hintFree(MemfdRamBlock block, long offset, long length) {
        if (offset < 0 || length < 0 || offset + length > block.size()) {
            throw new IndexOutOfBoundsException("free-page hint [" + offset + ", +" + length + ") outside "
                    + block.name());
        }
        long first = (offset + block.pageSize() - 1) / block.pageSize();
        long end = (offset + length) / block.pageSize();
        if (end <= first) {
            return 0;
        }
        bitmapLock.lock();
        try {
            for (BlockState s : blocks) {
                if (s.block == block) {
                    long dropped = s.bitmap.clearRange(first, end - first);
                    dirtyPages -= dropped;
                    return dropped;
                }
            }
            throw new IllegalArgumentException("RAM block " + block.name() + " is not being migrated");
        } finally {
            bitmapLock.unlock();
        }
    }
}
