package dev.ferry.migration.stream;

import dev.ferry.memory.MemfdRamBlock;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.channels.WritableByteChannel;
import java.nio.charset.StandardCharsets;

/**
 * Writes a migration stream (QEMU's QEMUFile, write side) through one buffer.
 *
 * <p><b>Over a socket, runs of pages are read by the kernel from their RAM block's memfd</b>
 * ({@link #putRamPages}, sendfile): no copy through this buffer, and the kernel reads the
 * file's pages, never this process's mapping of them. QEMU queues guest pages as iovecs
 * (qemu_put_buffer_async); Ferry did the same and measured it slower: on hosts that virtualise
 * page tables in software (shadow paging, PVM; the machine Ferry is developed on is one), the
 * kernel's first access to each page of a user mapping costs a fault of its own, so a 1 GiB
 * guest sent from its mapping ran at 0.7–0.9 GiB/s over loopback, against 1.4–2.1 GiB/s with
 * each page first copied into this buffer. Sent from the memfd, with the destination reading
 * straight into its RAM ({@link StreamReader#getDirect}), the bytes of 1 GiB alone went over
 * loopback at 4.1–5.0 GiB/s against 2.8–3.9 copied through buffers at both ends, with a quarter
 * less CPU on the sending thread. A 1 GiB idle migration gained less: 3.7–3.9 GiB/s against
 * 3.1–3.4 in one interleaved series, nothing measurable in three later ones, because the
 * destination's digest of each page it loads (CRC32C, on the loading thread) then limits the
 * rate: the same transfer test with it ran at 2.5–3.2 GiB/s either way. On any other channel
 * (a file, a pipe) each page is copied into this buffer, and the stream stays QEMU's.
 *
 * <p><b>Writes are whole buffers, from the caller's thread.</b> A page record may straddle two
 * writes: every write but the last is the full 256 KiB, a multiple of the page size. Two other
 * ways were measured slower over loopback, interleaved with this one (1 GiB idle guest):
 * flushing early so that no record straddles (so that {@link #putRamPage} could check every
 * page's copy; writes of 63 records of 4104 bytes) made the destination's kernel copy out of
 * the socket four times as long, 1.8–2.1 GiB/s end to end against 3.4–3.9, with socket buffers
 * of 512 KiB to 8 MiB alike; and a second thread writing one buffer while the caller fills the
 * other ran at 2.1–2.6 GiB/s against 2.9–3.8.
 *
 * <p>A page's bytes are read when it is put: if the guest writes it later, the page is dirty
 * again and will be sent again; the final pass runs with the vCPUs stopped.
 */
public final class StreamWriter implements AutoCloseable {

    /** Small enough to stay in a core's L2 cache between the copy in and the kernel's copy out. */
    private static final int BUFFER = 256 << 10;

    /** What {@link #putRamPage} compares a page with: zeros, as many as the largest page. */
    private static final MemorySegment ZERO_PAGE = Arena.global().allocate(64 << 10);

    /**
     * The fewest pages sent as a run ({@link #putRamPages}); fewer are copied into the buffer. A
     * run costs two system calls of its own (the header's write, the sendfile) and small
     * segments for the destination to read: single-page runs, as the sparse dirty pages of a
     * guest writing at random make, halved the throughput of a migration at 400 MiB/s of
     * dirtying, where runs of at least 16 pages cost nothing over copying.
     */
    static final int MIN_RUN_PAGES = 16;

    private final WritableByteChannel channel;
    private final ByteBuffer buffer = ByteBuffer.allocateDirect(BUFFER);
    // The buffer's memory as a segment, made once: copies into it use absolute offsets.
    private final MemorySegment bufferMemory = MemorySegment.ofBuffer(buffer);
    private long written;

    public StreamWriter(WritableByteChannel channel) {
        this.channel = channel;
    }

    private void ensure(int bytes) throws IOException {
        if (buffer.remaining() < bytes) {
            flush();
        }
    }

    public void put8(int v) throws IOException {
        ensure(1);
        buffer.put((byte) v);
    }

    public void put16(int v) throws IOException {
        ensure(2);
        buffer.putShort((short) v);
    }

    public void put32(int v) throws IOException {
        ensure(4);
        buffer.putInt(v);
    }

    public void put64(long v) throws IOException {
        ensure(8);
        buffer.putLong(v);
    }

    /**
     * Writes bytes (small things: names, device state). They go through the buffer's own put,
     * not {@link #putSegment}: a heap segment there would make the JIT's compiled page copy,
     * which has only seen off-heap memory, deoptimize in the middle of a migration.
     */
    public void put(byte[] bytes) throws IOException {
        int off = 0;
        while (off < bytes.length) {
            if (!buffer.hasRemaining()) {
                flush();
            }
            int n = Math.min(buffer.remaining(), bytes.length - off);
            buffer.put(bytes, off, n);
            off += n;
        }
    }

    /**
     * Writes a string with a one-byte length, as QEMU's idstr.
     *
     * @throws IllegalArgumentException if longer than 255 bytes in UTF-8
     */
    public void putString8(String s) throws IOException {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        if (b.length > 255) {
            throw new IllegalArgumentException("name longer than 255 bytes: " + s);
        }
        put8(b.length);
        put(b);
    }

    /** Writes the bytes of {@code data}, off-heap memory. */
    public void putSegment(MemorySegment data) throws IOException {
        putSegment(data, 0, data.byteSize());
    }

    /** Writes {@code length} bytes of {@code data} from {@code offset} on: a guest page, with no slice made. */
    public void putSegment(MemorySegment data, long offset, long length) throws IOException {
        long off = 0;
        while (off < length) {
            if (!buffer.hasRemaining()) {
                flush();
            }
            int n = (int) Math.min(buffer.remaining(), length - off);
            MemorySegment.copy(data, offset + off, bufferMemory, buffer.position(), n);
            buffer.position(buffer.position() + n);
            off += n;
        }
    }

    /**
     * Writes one RAM page record, as QEMU's ram_save_page and save_zero_page: the header (the
     * page's offset in its block, {@link QemuFormat#RAM_FLAG_CONTINUE} when {@code idstr} is
     * null), the block's idstr otherwise, then the page; or, when the page holds only zeros, the
     * header with {@link QemuFormat#RAM_FLAG_ZERO} and one byte of zero.
     *
     * <p>Where the record fits in the buffer, the page is copied first and the copy checked: guest
     * RAM is read once, by the copy, whose loads go out together, where a check first waits for
     * the page's first cache line from memory before the copy starts. The check reads the copy
     * from L1 and, on a page with data, stops at its first word; a zero page's copy is taken back.
     * A record that would straddle the buffer's end is checked in guest RAM first and split, so
     * that writes stay whole buffers. Interleaved over loopback, 1 GiB idle guest, 15 runs each:
     * throughput over the TCP copy 0.90 against 0.85 (medians), CPU 1.47 s against 1.51.
     *
     * @param ram      the block's memory, off-heap
     * @param offset   the page's offset in the block
     * @param pageSize at most 64 KiB
     * @param idstr    the block's name in UTF-8 (at most 255 bytes), or null if the record
     *                 continues the block of the previous one
     * @return true if the page was sent as a zero page
     * @throws IllegalArgumentException if the page or the name is too long
     */
    public boolean putRamPage(MemorySegment ram, long offset, int pageSize, byte[] idstr) throws IOException {
        if (pageSize > ZERO_PAGE.byteSize()) {
            throw new IllegalArgumentException("RAM page of " + pageSize + " bytes: at most 64 KiB");
        }
        if (idstr != null && idstr.length > 255) {
            throw new IllegalArgumentException("RAM block name of " + idstr.length + " bytes: at most 255");
        }
        long flags = idstr == null ? QemuFormat.RAM_FLAG_CONTINUE : 0;
        if (buffer.remaining() < 8 + (idstr == null ? 0 : 1 + idstr.length) + pageSize) {
            boolean zero = MemorySegment.mismatch(ram, offset, offset + pageSize, ZERO_PAGE, 0, pageSize) == -1;
            putHeader(offset | (zero ? QemuFormat.RAM_FLAG_ZERO : QemuFormat.RAM_FLAG_PAGE), idstr);
            if (zero) {
                put8(0);
            } else {
                putSegment(ram, offset, pageSize);
            }
            return zero;
        }
        int at = buffer.position();
        buffer.putLong(offset | flags | QemuFormat.RAM_FLAG_PAGE);
        if (idstr != null) {
            buffer.put((byte) idstr.length).put(idstr);
        }
        int data = buffer.position();
        MemorySegment.copy(ram, offset, bufferMemory, data, pageSize);
        if (MemorySegment.mismatch(bufferMemory, data, data + pageSize, ZERO_PAGE, 0, pageSize) != -1) {
            buffer.position(data + pageSize);
            return false;
        }
        buffer.putLong(at, offset | flags | QemuFormat.RAM_FLAG_ZERO);
        buffer.put(data, (byte) 0);
        buffer.position(data + 1);
        return true;
    }

    /**
     * @return whether RAM pages go as runs the kernel reads from their block
     *         ({@link #putRamPages}): only over a socket, where that is sendfile; a file keeps
     *         QEMU's records, which QEMU's scripts read
     */
    public boolean sendsPageRuns() {
        return channel instanceof SocketChannel;
    }

    /**
     * Writes {@code pages} pages of {@code block} from {@code offset} on, next to each other:
     * each zero page as a zero page (as {@link #putRamPage} does), each run of pages with data
     * between them as one record ({@link QemuFormat#RAM_FLAG_PAGES}: the first page's offset,
     * {@link QemuFormat#RAM_FLAG_CONTINUE} when {@code idstr} is null, else the block's idstr;
     * {@code be32} count; the pages), whose pages the kernel reads from the block's memfd (see
     * {@link MemfdRamBlock#transferTo}). Their bytes are those they hold when the socket copies
     * them out: a page the guest writes meanwhile must be dirty again, as it is in a migration.
     * For a channel that {@link #sendsPageRuns()}.
     *
     * @param idstr the block's name in UTF-8, or null if the first record continues the block
     *              of the previous one
     * @return how many of the pages were sent as zero pages
     * @throws IllegalArgumentException if there are no pages, or the name is too long
     */
    public int putRamPages(MemfdRamBlock block, long offset, int pages, byte[] idstr) throws IOException {
        int pageSize = block.pageSize();
        if (pages < 1 || pageSize > ZERO_PAGE.byteSize()) {
            throw new IllegalArgumentException("a run of " + pages + " RAM pages of " + pageSize + " bytes");
        }
        MemorySegment ram = block.host();
        long end = offset + (long) pages * pageSize;
        if (pages < MIN_RUN_PAGES) {
            // Too few for a run whatever their contents: skip the scan of guest RAM for zeros.
            return putPagesCopied(ram, offset, end, pageSize, idstr);
        }
        long withData = offset;
        int zeros = 0;
        byte[] name = idstr;
        for (long at = offset; at < end; at += pageSize) {
            // A page with data differs from zeros in its first word, almost always: read no further.
            if (MemorySegment.mismatch(ram, at, at + pageSize, ZERO_PAGE, 0, pageSize) != -1) {
                continue;
            }
            if (at > withData) {
                putRun(block, withData, at, name);
                name = null;
            }
            putZeroPage(at, name);
            name = null;
            zeros++;
            withData = at + pageSize;
        }
        if (end > withData) {
            putRun(block, withData, end, name);
        }
        return zeros;
    }

    /**
     * Pages with data from {@code from} to {@code to}: as one run from the memfd if there are at
     * least {@link #MIN_RUN_PAGES}, else each copied into the buffer as QEMU's page record.
     */
    private void putRun(MemfdRamBlock block, long from, long to, byte[] idstr) throws IOException {
        int pageSize = block.pageSize();
        if (to - from < (long) MIN_RUN_PAGES * pageSize) {
            putPagesCopied(block.host(), from, to, pageSize, idstr);
            return;
        }
        putHeader(from | QemuFormat.RAM_FLAG_PAGES, idstr);
        put32((int) ((to - from) / pageSize));
        flush();
        block.transferTo(from, to - from, channel);
        written += to - from;
    }

    /** Pages from {@code from} to {@code to}, each as {@link #putRamPage}; @return how many were zero */
    private int putPagesCopied(MemorySegment ram, long from, long to, int pageSize, byte[] idstr) throws IOException {
        int zeros = 0;
        byte[] name = idstr;
        for (long at = from; at < to; at += pageSize) {
            if (putRamPage(ram, at, pageSize, name)) {
                zeros++;
            }
            name = null;
        }
        return zeros;
    }

    /** A zero page: the header with {@link QemuFormat#RAM_FLAG_ZERO} and one byte of zero (save_zero_page). */
    private void putZeroPage(long offset, byte[] idstr) throws IOException {
        putHeader(offset | QemuFormat.RAM_FLAG_ZERO, idstr);
        put8(0);
    }

    /** A RAM record's header: the word, then the idstr, or {@link QemuFormat#RAM_FLAG_CONTINUE} in the word without one. */
    private void putHeader(long word, byte[] idstr) throws IOException {
        if (idstr != null && idstr.length > 255) {
            throw new IllegalArgumentException("RAM block name of " + idstr.length + " bytes: at most 255");
        }
        put64(idstr == null ? word | QemuFormat.RAM_FLAG_CONTINUE : word);
        if (idstr != null) {
            put8(idstr.length);
            put(idstr);
        }
    }

    /** @return bytes handed to this writer so far, flushed or not */
    public long position() {
        return written + buffer.position();
    }

    /** @return bytes written to the channel so far */
    public long flushed() {
        return written;
    }

    /** Writes everything buffered. */
    public void flush() throws IOException {
        buffer.flip();
        try {
            while (buffer.hasRemaining()) {
                written += channel.write(buffer);
            }
        } finally {
            buffer.clear();
        }
    }

    @Override
    public void close() throws IOException {
        try {
            flush();
        } finally {
            channel.close();
        }
    }
}
