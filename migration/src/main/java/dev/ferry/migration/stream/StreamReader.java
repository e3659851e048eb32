package dev.ferry.migration.stream;

import dev.ferry.vmstate.VMStateInput;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.ReadableByteChannel;
import java.nio.charset.StandardCharsets;

/**
 * Reads a migration stream (QEMU's QEMUFile, read side), keeping the byte offset so that every
 * error can say where it was found. Reads never allocate more than the caller allows: lengths
 * come from the stream and are hostile until checked.
 */
public final class StreamReader implements VMStateInput {

    private final ReadableByteChannel channel;
    // As the writer's, small enough to stay in a core's L2 cache between the kernel's copy in and
    // the copy out to guest RAM (1 MiB was measured slower).
    private final ByteBuffer buffer = ByteBuffer.allocateDirect(256 << 10);
    // The buffer's whole memory as a segment, made once: copies out of it use absolute offsets.
    private final MemorySegment bufferMemory = MemorySegment.ofBuffer(buffer);
    private long consumed;

    public StreamReader(ReadableByteChannel channel) {
        this.channel = channel;
        buffer.flip();
    }

    /** @return the offset of the next byte to be read */
    @Override
    public long offset() {
        return consumed;
    }

    /** @return a stream error at the current offset */
    public StreamException error(String reason) {
        return new StreamException(consumed, reason);
    }

    private void need(int bytes) throws IOException {
        if (buffer.remaining() >= bytes) {
            return;
        }
        buffer.compact();
        try {
            while (buffer.position() < bytes) {
                int n = channel.read(buffer);
                if (n < 0) {
                    int have = buffer.position();
                    throw new StreamException(consumed + have, "stream ends early (truncated): needed "
                            + (bytes - have) + " more byte(s)");
                }
            }
        } finally {
            buffer.flip();
        }
    }

    /**
     * @return up to {@code length} (at most 256) next bytes, not consumed; fewer if the stream
     *         ends first
     */
    @Override
    public byte[] peek(int length) throws IOException {
        if (length < 0 || length > 256) {
            throw new IllegalArgumentException("peek of " + length + " bytes");
        }
        if (buffer.remaining() < length) {
            buffer.compact();
            try {
                while (buffer.position() < length) {
                    if (channel.read(buffer) < 0) {
                        break;
                    }
                }
            } finally {
                buffer.flip();
            }
        }
        byte[] out = new byte[Math.min(length, buffer.remaining())];
        buffer.get(buffer.position(), out);
        return out;
    }

    @Override
    public int get8() throws IOException {
        need(1);
        consumed += 1;
        return buffer.get() & 0xff;
    }

    @Override
    public int get16() throws IOException {
        need(2);
        consumed += 2;
        return buffer.getShort() & 0xffff;
    }

    @Override
    public int get32() throws IOException {
        need(4);
        consumed += 4;
        return buffer.getInt();
    }

    @Override
    public long get64() throws IOException {
        need(8);
        consumed += 8;
        return buffer.getLong();
    }

    /** Reads {@code length} bytes, which the caller has bounded. */
    @Override
    public byte[] getBytes(int length) throws IOException {
        byte[] out = new byte[length];
        int off = 0;
        while (off < length) {
            need(1);
            int n = Math.min(buffer.remaining(), length - off);
            buffer.get(out, off, n);
            off += n;
            consumed += n;
        }
        return out;
    }

    /** Reads a string with a one-byte length (QEMU's idstr). */
    public String getString8() throws IOException {
        int len = get8();
        return new String(getBytes(len), StandardCharsets.UTF_8);
    }

    /**
     * Reads exactly {@code dst.byteSize()} bytes into memory. They go through the buffer even
     * when it is empty, rather than straight from the socket into guest RAM: see
     * {@link StreamWriter} for why the kernel should not touch guest pages itself.
     */
    public void getInto(MemorySegment dst) throws IOException {
        getInto(dst, 0, dst.byteSize());
    }

    /** Reads exactly {@code length} bytes into {@code dst} from {@code offset} on, as {@link #getInto(MemorySegment)}. */
    public void getInto(MemorySegment dst, long offset, long length) throws IOException {
        long off = 0;
        while (off < length) {
            if (!buffer.hasRemaining()) {
                buffer.clear();
                int n;
                try {
                    n = channel.read(buffer);
                } finally {
                    buffer.flip();
                }
                if (n < 0) {
                    throw new StreamException(consumed, "stream ends early (truncated) inside " + length
                            + " bytes of data");
                }
                continue;
            }
            int n = (int) Math.min(buffer.remaining(), length - off);
            MemorySegment.copy(bufferMemory, buffer.position(), dst, offset + off, n);
            buffer.position(buffer.position() + n);
            off += n;
            consumed += n;
        }
    }

    /** Skips {@code length} bytes. */
    public void skip(long length) throws IOException {
        long left = length;
        while (left > 0) {
            need(1);
            int n = (int) Math.min(buffer.remaining(), left);
            buffer.position(buffer.position() + n);
            consumed += n;
            left -= n;
        }
    }
}
