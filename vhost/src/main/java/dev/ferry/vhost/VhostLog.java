package dev.ferry.vhost;

import dev.ferry.memory.linux.Linux;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;

/**
 * A vhost dirty log: one bit per 4 KiB page of guest-physical address space, in 64-bit words
 * (QEMU's {@code struct vhost_log}; VHOST_LOG_PAGE is 0x1000 and a chunk is one 64-bit word,
 * include/hw/virtio/vhost.h). Backends set bits with atomic ORs after they write guest memory;
 * the logger takes them by exchanging words with zero, so a bit set concurrently is either
 * taken now or stays for the next scan, never lost.
 *
 * <p>A kernel-like backend's log is ordinary process memory; a user-like backend's lives in a
 * memfd ({@link #fd()}) that a backend in another process maps (QEMU's vhost_log_alloc with
 * share, for vhost-user's VHOST_USER_SET_LOG_BASE).
 *
 * <p>The reference count belongs to {@link VhostBackends}, which hands logs out and frees them.
 */
public final class VhostLog {

    /** VHOST_LOG_PAGE: bytes of guest memory per bit. */
    public static final int LOG_PAGE = 0x1000;
    /** VHOST_LOG_CHUNK: bytes of guest memory per 64-bit word. */
    public static final long LOG_CHUNK = 64L * LOG_PAGE;

    private static final VarHandle WORD = ValueLayout.JAVA_LONG.varHandle();

    private final long words;
    private final MemorySegment log;
    private final int fd;
    private final Arena arena;
    /** Devs holding this log; guarded by the {@link VhostBackends} that made it. */
    int refs;

    private VhostLog(long words, MemorySegment log, int fd, Arena arena) {
        this.words = words;
        this.log = log;
        this.fd = fd;
        this.arena = arena;
    }

    /**
     * Allocates a zeroed log.
     *
     * @param words  64-bit words, each covering {@link #LOG_CHUNK} bytes of guest-physical space
     * @param shared in a memfd another process can map (user-like backends), or in private memory
     */
    static VhostLog allocate(long words, boolean shared) {
        if (words < 1 || words > (1L << 40) / 8) {
            throw new IllegalArgumentException("vhost log of " + words + " words");
        }
        long bytes = words * 8;
        if (!shared) {
            Arena arena = Arena.ofShared();
            return new VhostLog(words, arena.allocate(bytes, 8), -1, arena);
        }
        int fd = Linux.memfdCreate("ferry:vhost-log", Linux.MFD_CLOEXEC);
        try {
            // Rounded to pages: mmap maps whole pages, and the kernel zero-fills a fresh memfd.
            long mapped = Math.ceilDiv(bytes, 4096L) * 4096;
            Linux.ftruncate(fd, mapped);
            MemorySegment m = Linux.mmap(mapped, Linux.PROT_READ | Linux.PROT_WRITE, Linux.MAP_SHARED, fd, 0);
            return new VhostLog(words, m, fd, null);
        } catch (RuntimeException e) {
            Linux.close(fd);
            throw e;
        }
    }

    /** @return the words of log needed to cover guest-physical addresses below {@code end} (QEMU's vhost_get_log_size) */
    public static long wordsFor(long end) {
        return end <= 0 ? 1 : (end - 1) / LOG_CHUNK + 1;
    }

    /** @return the number of 64-bit words */
    public long words() {
        return words;
    }

    /** @return the guest-physical bytes covered */
    public long coverage() {
        return words * LOG_CHUNK;
    }

    /** @return the memfd of a shared log, or -1 */
    public int fd() {
        return fd;
    }

    /** @return whether the log lives in a memfd */
    public boolean shared() {
        return fd >= 0;
    }

    /**
     * Marks the pages overlapping {@code [address, address + length)} dirty, a word at a time
     * with atomic ORs (a backend's log write, after its data write).
     *
     * @throws IndexOutOfBoundsException if the range is beyond the log
     */
    public void mark(long address, long length) {
        if (length <= 0) {
            return;
        }
        long first = address / LOG_PAGE;
        long last = (address + length - 1) / LOG_PAGE;
        if (address < 0 || last >= words * 64) {
            throw new IndexOutOfBoundsException(String.format("guest range [0x%x, +%d) beyond a vhost log covering "
                    + "0x%x bytes", address, length, coverage()));
        }
        for (long w = first >>> 6; w <= last >>> 6; w++) {
            long lo = Math.max(first, w << 6) & 63;
            long hi = Math.min(last, (w << 6) + 63) & 63;
            long mask = (hi == 63 ? -1L : (1L << (hi + 1)) - 1) & (-1L << lo);
            WORD.getAndBitwiseOr(log, w * 8, mask);
        }
    }

    /** @return whether the page holding {@code address} is marked (for tests; takes nothing) */
    public boolean marked(long address) {
        long page = address / LOG_PAGE;
        return ((long) WORD.getVolatile(log, (page >>> 6) * 8) & (1L << page)) != 0;
    }

    /**
     * Whether any page overlapping {@code [address, address + length)} is marked, by plain reads:
     * the cheap test before a take, for small ranges such as a used ring (stale by nature, as
     * any read of a log that backends write; a mark it misses is taken by the next sync).
     */
    public boolean anyMarked(long address, long length) {
        long first = address / LOG_PAGE;
        long last = Math.min((address + length - 1) / LOG_PAGE, words * 64 - 1);
        for (long w = first >>> 6; w <= last >>> 6; w++) {
            if ((long) WORD.get(log, w * 8) != 0) {
                return true;
            }
        }
        return false;
    }

    /** Receives the marks taken, 64 pages at a time. */
    @FunctionalInterface
    public interface WordSink {
        /**
         * @param index word {@code index} of the range taken: pages {@code firstPage + 64 * index} on
         * @param bits  the marks, bit {@code i} for page {@code firstPage + 64 * index + i}; never 0
         */
        void accept(long index, long bits);
    }

    /**
     * Takes the marks of pages {@code [firstPage, firstPage + pages)} (guest-physical page
     * numbers) and hands them to {@code sink}, clearing them here. Words are read plainly first
     * and exchanged only when not zero, since most of a log is clean (QEMU's
     * vhost_dev_sync_region does the same); partial words at the ends are taken with an atomic
     * AND so that the neighbours' marks stay. Only words with marks reach the sink.
     *
     * @return the number of marks taken
     */
    public long take(long firstPage, long pages, WordSink sink) {
        if (firstPage < 0 || pages <= 0 || firstPage + pages > words * 64) {
            throw new IndexOutOfBoundsException("pages [" + firstPage + ", +" + pages + ") beyond a vhost log of "
                    + words + " words");
        }
        long end = firstPage + pages;
        int shift = (int) (firstPage & 63);
        long taken = 0;
        long outWords = Math.ceilDiv(pages, 64L);
        if (shift == 0) {
            // The usual case (sections start on 256 KiB boundaries): output word k is log word
            // first + k, and a clean word costs takeMasked's one plain read.
            long base = firstPage >>> 6;
            for (long k = 0; k < outWords; k++) {
                long bits = takeMasked(base + k, rangeMask(0, Math.min(64, end - firstPage - 64 * k)));
                if (bits != 0) {
                    sink.accept(k, bits);
                    taken += Long.bitCount(bits);
                }
            }
            return taken;
        }
        for (long k = 0; k < outWords; k++) {
            long from = firstPage + 64 * k;
            long to = Math.min(end, from + 64);
            // Output word k straddles two log words.
            long w = from >>> 6;
            long lowCount = Math.min(64 - shift, to - from);
            long bits = takeMasked(w, rangeMask(shift, lowCount)) >>> shift;
            long highCount = (to - from) - lowCount;
            if (highCount > 0) {
                bits |= takeMasked(w + 1, rangeMask(0, highCount)) << (64 - shift);
            }
            if (bits != 0) {
                sink.accept(k, bits);
                taken += Long.bitCount(bits);
            }
        }
        return taken;
    }

    /** @return {@code count} ones from bit {@code from} */
    private static long rangeMask(long from, long count) {
        return (count >= 64 ? -1L : (1L << count) - 1) << from;
    }

    private long takeMasked(long word, long mask) {
        long at = word * 8;
        if (((long) WORD.get(log, at) & mask) == 0) {
            return 0;
        }
        if (mask == -1L) {
            return (long) WORD.getAndSet(log, at, 0L);
        }
        return (long) WORD.getAndBitwiseAnd(log, at, ~mask) & mask;
    }

    /** Frees the memory; called by {@link VhostBackends} when the last dev lets go. */
    void free() {
        if (arena != null) {
            arena.close();
        } else {
            Linux.munmap(log);
            Linux.close(fd);
        }
    }

    @Override
    public String toString() {
        return "vhost log (" + words + " words" + (shared() ? ", memfd " + fd : "") + ")";
    }
}
