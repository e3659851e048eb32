package dev.ferry.migration;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.WritableByteChannel;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Messages from the destination back to the source, framed as QEMU's return path is
 * (be16 type, be16 length, payload). Type {@link #SHUT} is QEMU's MIG_RP_MSG_SHUT; the others are
 * Ferry's, numbered far from QEMU's.
 */
final class ReturnPath {

    /** QEMU's MIG_RP_MSG_SHUT: be32 0 for success, else failure. */
    static final int SHUT = 1;
    /** RAM digests: per block, a one-byte-length name and a be32 CRC32C digest. */
    static final int DIGESTS = 0x7f01;
    /** The destination rejected the stream: a UTF-8 message. */
    static final int ERROR = 0x7f02;

    /**
     * The destination has built the machine the configuration names (its RAM allocated, and
     * faulted in or being faulted in) and is ready for pages. The source waits for it before it
     * starts sending, so that preparing the destination counts as setup, never as downtime.
     */
    static final int READY = 0x7f03;

    /** The source's verdict after comparing digests, sent on the main stream after its end. */
    static final int GO = 'G';
    static final int ABORT = 'A';

    record Message(int type, byte[] payload) {
        int shutStatus() {
            return ByteBuffer.wrap(payload).getInt();
        }

        String text() {
            return new String(payload, StandardCharsets.UTF_8);
        }

        Map<String, Integer> digests() throws IOException {
            Map<String, Integer> out = new LinkedHashMap<>();
            ByteBuffer b = ByteBuffer.wrap(payload);
            try {
                while (b.hasRemaining()) {
                    byte[] name = new byte[b.get() & 0xff];
                    b.get(name);
                    out.put(new String(name, StandardCharsets.UTF_8), b.getInt());
                }
            } catch (java.nio.BufferUnderflowException e) {
                throw new IOException("malformed digest message on the return path");
            }
            return out;
        }
    }

    private ReturnPath() {
    }

    static void send(WritableByteChannel out, int type, byte[] payload) throws IOException {
        if (payload.length > 0xffff) {
            payload = java.util.Arrays.copyOf(payload, 0xffff);
        }
        ByteBuffer b = ByteBuffer.allocate(4 + payload.length);
        b.putShort((short) type).putShort((short) payload.length).put(payload).flip();
        while (b.hasRemaining()) {
            out.write(b);
        }
    }

    static void sendShut(WritableByteChannel out, boolean ok) throws IOException {
        send(out, SHUT, ByteBuffer.allocate(4).putInt(ok ? 0 : 1).array());
    }

    static void sendError(WritableByteChannel out, String message) throws IOException {
        send(out, ERROR, message.getBytes(StandardCharsets.UTF_8));
    }

    static void sendDigests(WritableByteChannel out, Map<String, Integer> digests) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(0xffff);
        digests.forEach((name, crc) -> {
            byte[] n = name.getBytes(StandardCharsets.UTF_8);
            b.put((byte) n.length).put(n).putInt(crc);
        });
        byte[] payload = new byte[b.position()];
        b.flip().get(payload);
        send(out, DIGESTS, payload);
    }

    static Message receive(ReadableByteChannel in) throws IOException {
        ByteBuffer head = ByteBuffer.allocate(4);
        readFully(in, head);
        head.flip();
        int type = head.getShort() & 0xffff;
        int len = head.getShort() & 0xffff;
        ByteBuffer body = ByteBuffer.allocate(len);
        readFully(in, body);
        return new Message(type, body.array());
    }

    private static void readFully(ReadableByteChannel in, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            if (in.read(b) < 0) {
                throw new EOFException("the destination closed the return path");
            }
        }
    }
}
