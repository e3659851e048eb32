package dev.ferry.migration.stream;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.GatheringByteChannel;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * Writes a migration stream (QEMU's QEMUFile, write side). Small fields go into a buffer;
 * guest pages are not copied: they are queued as views of guest RAM and leave with the
 * buffered headers in one gathering write, as QEMU's qemu_put_buffer_async does.
 *
 * <p>A queued page is read when the queue is flushed. If the guest writes it in between, the
 * page is dirty again and will be sent again; the final pass runs with the vCPUs stopped.
 */
public final class StreamWriter implements AutoCloseable {

    private static final int BUFFER = 256 << 10;
    /** Flush once this many buffers are queued (the kernel takes up to IOV_MAX = 1024). */
    private static final int MAX_IOV = 512;

    private final GatheringByteChannel channel;
    private final ByteBuffer buffer = ByteBuffer.allocateDirect(BUFFER);
    private final List<ByteBuffer> queue = new ArrayList<>();
    private int cut;
    private long written;
    private long queuedBytes;

    public StreamWriter(GatheringByteChannel channel) {
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

    /** Writes bytes through the buffer (small things: names, device state). */
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

    /** Queues a slice of guest memory to leave without a copy. */
    public void putSegment(MemorySegment data) throws IOException {
        putBuffer(data.asByteBuffer());
    }

    /**
     * Queues a buffer (a view of guest memory) to leave without a copy. Its bytes are read when
     * the queue is flushed.
     */
    public void putBuffer(ByteBuffer data) throws IOException {
        int pos = buffer.position();
        if (pos > cut) {
            queue.add(buffer.slice(cut, pos - cut));
            // Those bytes leave the buffer's count for the queue's: position() must keep them.
            queuedBytes += pos - cut;
            cut = pos;
        }
        queue.add(data);
        queuedBytes += data.remaining();
        if (queue.size() >= MAX_IOV) {
            flush();
        }
    }

    /** @return bytes handed to this writer so far, flushed or not */
    public long position() {
        return written + queuedBytes + (buffer.position() - cut);
    }

    /** @return bytes written to the channel so far */
    public long flushed() {
        return written;
    }

    /** Writes everything queued and buffered. */
    public void flush() throws IOException {
        int pos = buffer.position();
        if (pos > cut) {
            queue.add(buffer.slice(cut, pos - cut));
        }
        if (!queue.isEmpty()) {
            ByteBuffer[] iov = queue.toArray(ByteBuffer[]::new);
            long total = 0;
            for (ByteBuffer b : iov) {
                total += b.remaining();
            }
            long done = 0;
            int first = 0;
            while (done < total) {
                long n = channel.write(iov, first, iov.length - first);
                done += n;
                while (first < iov.length && !iov[first].hasRemaining()) {
                    first++;
                }
            }
            written += total;
        }
        queue.clear();
        queuedBytes = 0;
        buffer.clear();
        cut = 0;
    }

    @Override
    public void close() throws IOException {
        flush();
        channel.close();
    }
}
