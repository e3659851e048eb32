package dev.ferry.vmstate;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Arrays;

/** A section body in memory (a device state saved on its own, a test), read as the stream would be. */
final class BytesInput implements VMStateInput {

    private final ByteBuffer b;

    BytesInput(byte[] bytes) {
        this.b = ByteBuffer.wrap(bytes);
    }

    private void need(int n) throws EOFException {
        if (b.remaining() < n) {
            throw new EOFException("truncated at " + b.position());
        }
    }

    @Override
    public int get8() throws IOException {
        need(1);
        return b.get() & 0xff;
    }

    @Override
    public int get16() throws IOException {
        need(2);
        return b.getShort() & 0xffff;
    }

    @Override
    public int get32() throws IOException {
        need(4);
        return b.getInt();
    }

    @Override
    public long get64() throws IOException {
        need(8);
        return b.getLong();
    }

    @Override
    public byte[] getBytes(int length) throws IOException {
        need(length);
        byte[] out = new byte[length];
        b.get(out);
        return out;
    }

    @Override
    public byte[] peek(int length) {
        int n = Math.min(length, b.remaining());
        return Arrays.copyOfRange(b.array(), b.position(), b.position() + n);
    }

    @Override
    public long offset() {
        return b.position();
    }

    /** @return bytes not read yet */
    int remaining() {
        return b.remaining();
    }
}
