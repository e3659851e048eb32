package dev.ferry.migration.stream;

import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.WritableByteChannel;
import java.nio.charset.StandardCharsets;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The stream's writer and reader on channels that take and give a few bytes at a time. */
class StreamReaderWriterTest {

    /** Accepts at most {@code max} bytes per write call, as a full socket buffer does. */
    private static final class Trickle implements WritableByteChannel {
        final ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        final Random random = new Random(9);
        final int max;

        Trickle(int max) {
            this.max = max;
        }

        @Override
        public int write(ByteBuffer src) {
            int n = Math.min(src.remaining(), 1 + random.nextInt(max));
            for (int i = 0; i < n; i++) {
                bytes.write(src.get());
            }
            return n;
        }

        @Override
        public boolean isOpen() {
            return true;
        }

        @Override
        public void close() {
        }
    }

    private static ReadableByteChannel dribble(byte[] data, int max) {
        Random random = new Random(4);
        int[] pos = {0};
        return new ReadableByteChannel() {
            @Override
            public int read(ByteBuffer dst) {
                if (pos[0] == data.length) {
                    return -1;
                }
                int n = Math.min(Math.min(dst.remaining(), data.length - pos[0]), 1 + random.nextInt(max));
                dst.put(data, pos[0], n);
                pos[0] += n;
                return n;
            }

            @Override
            public boolean isOpen() {
                return true;
            }

            @Override
            public void close() {
            }
        };
    }

    @Test
    void roundTripThroughPartialWritesAndReads() throws Exception {
        Trickle ch = new Trickle(1000);
        StreamWriter w = new StreamWriter(ch);
        MemorySegment page = Arena.ofAuto().allocate(4096);
        for (int i = 0; i < 4096; i++) {
            page.set(java.lang.foreign.ValueLayout.JAVA_BYTE, i, (byte) (i * 7));
        }
        int records = 3000; // several times the writer's buffer
        for (int i = 0; i < records; i++) {
            w.put8(i);
            w.put16(i);
            w.put32(i * 31);
            w.put64((long) i << 33);
            w.putString8("rec" + i);
            if (i % 7 == 0) {
                w.putSegment(page);
            }
        }
        long position = w.position();
        w.flush();
        assertEquals(position, w.flushed());
        byte[] bytes = ch.bytes.toByteArray();
        assertEquals(position, bytes.length);

        StreamReader r = new StreamReader(dribble(bytes, 5000));
        MemorySegment into = Arena.ofAuto().allocate(4096);
        for (int i = 0; i < records; i++) {
            assertEquals(i & 0xff, r.get8());
            assertEquals(i & 0xffff, r.get16());
            assertEquals(i * 31, r.get32());
            assertEquals((long) i << 33, r.get64());
            assertEquals("rec" + i, r.getString8());
            if (i % 7 == 0) {
                if (i % 2 == 0) {
                    r.getInto(into);
                    assertEquals(-1, into.mismatch(page));
                } else {
                    r.skip(4096);
                }
            }
        }
        assertEquals(bytes.length, r.offset());
        StreamException end = assertThrows(StreamException.class, r::get8);
        assertEquals(bytes.length, end.offset());
    }

    /**
     * A page record is decided after its copy where it fits the buffer, and before it where it
     * straddles the buffer's end: either way a zero page goes as a zero record and any other page
     * whole, whatever the buffer held before.
     */
    @Test
    void ramPagesAreSentInFullOrAsZeroPagesAcrossBufferBoundaries() throws Exception {
        Trickle ch = new Trickle(70_000);
        StreamWriter w = new StreamWriter(ch);
        MemorySegment ram = Arena.ofAuto().allocate(4096L * 4);
        ram.set(ValueLayout.JAVA_BYTE, 4096 + 4095, (byte) 1); // page 1: one byte, at its end
        ram.set(ValueLayout.JAVA_BYTE, 3 * 4096, (byte) 9);    // page 3: at its start
        byte[] name = "pc.ram".getBytes(StandardCharsets.UTF_8);
        int records = 300; // over the buffer several times, records straddling its end
        for (int i = 0; i < records; i++) {
            int page = i % 4;
            boolean zero = w.putRamPage(ram, page * 4096L, 4096, i % 5 == 0 ? name : null);
            assertEquals(page == 0 || page == 2, zero, "page " + page);
            w.put8(0x5a); // a marker after each record: a record's wrong length shows at once
        }
        w.flush();
        StreamReader r = new StreamReader(dribble(ch.bytes.toByteArray(), 9000));
        MemorySegment into = Arena.ofAuto().allocate(4096);
        for (int i = 0; i < records; i++) {
            int page = i % 4;
            boolean zero = page == 0 || page == 2;
            long flags = (zero ? QemuFormat.RAM_FLAG_ZERO : QemuFormat.RAM_FLAG_PAGE)
                    | (i % 5 == 0 ? 0 : QemuFormat.RAM_FLAG_CONTINUE);
            assertEquals(page * 4096L | flags, r.get64(), "record " + i);
            if (i % 5 == 0) {
                assertEquals("pc.ram", r.getString8());
            }
            if (zero) {
                assertEquals(0, r.get8());
            } else {
                r.getInto(into);
                assertEquals(-1, into.mismatch(ram.asSlice(page * 4096L, 4096)), "record " + i);
            }
            assertEquals(0x5a, r.get8(), "record " + i);
        }
        assertThrows(StreamException.class, r::get8);
        assertThrows(IllegalArgumentException.class, () -> w.putRamPage(ram, 0, 4096, new byte[256]));
    }

    @Test
    void truncationInsidePageDataNamesTheByte() throws Exception {
        byte[] data = new byte[3 + 1000];
        StreamReader r = new StreamReader(dribble(data, 64));
        r.getBytes(3);
        StreamException e = assertThrows(StreamException.class, () -> r.getInto(Arena.ofAuto().allocate(4096)));
        assertEquals(1003, e.offset());
        assertTrue(e.getMessage().startsWith("bad migration stream at byte 1003: "), e.getMessage());
        StreamReader s = new StreamReader(dribble(new byte[10], 3));
        assertEquals(10, assertThrows(StreamException.class, () -> s.skip(11)).offset());
        StreamReader t = new StreamReader(dribble(new byte[]{5, 'a', 'b'}, 3));
        assertEquals(3, assertThrows(StreamException.class, t::getString8).offset());
    }

    @Test
    void longNamesAreRefused() throws Exception {
        StreamWriter w = new StreamWriter(new Trickle(10));
        assertThrows(IllegalArgumentException.class, () -> w.putString8("x".repeat(256)));
        w.putString8("x".repeat(255));
        assertEquals(256, w.position());
        byte[] big = new byte[600 << 10]; // larger than the writer's buffer
        new Random(1).nextBytes(big);
        Trickle ch = new Trickle(100_000);
        StreamWriter v = new StreamWriter(ch);
        v.put(big);
        v.flush();
        assertArrayEquals(big, ch.bytes.toByteArray());
    }
}
