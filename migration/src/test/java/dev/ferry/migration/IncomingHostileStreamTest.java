package dev.ferry.migration;

import dev.ferry.machine.Machine;
import dev.ferry.machine.MachineConfig;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import dev.ferry.migration.TestSupport.ChunkedChannel;
import dev.ferry.migration.TestSupport.ReadConnection;
import dev.ferry.migration.TestSupport.Sink;
import dev.ferry.migration.bootstrap.TrackedMachine;
import dev.ferry.migration.ram.RamDigest;
import dev.ferry.migration.stream.QemuFormat;
import dev.ferry.migration.stream.StreamException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.ValueLayout;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;

import static dev.ferry.migration.TestSupport.MIB;
import static dev.ferry.migration.TestSupport.messages;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The destination facing malformed, truncated and hostile streams: each is rejected with a
 * {@link StreamException} naming the byte offset and the reason (never another exception, never
 * a hang), the source hears the reason on the return path, and the same destination then takes
 * a good stream.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class IncomingHostileStreamTest {

    private static final java.util.regex.Pattern AT = java.util.regex.Pattern.compile(
            "^bad migration stream at byte (\\d+): .+");
    private static final Incoming INCOMING = TestSupport.incoming(64 * MIB);

    // ---- helpers

    private static Incoming.Result receive(byte[] stream, Sink returnPath, int maxChunk, long seed) throws Exception {
        return INCOMING.receive(new ReadConnection(new ChunkedChannel(stream, stream.length, maxChunk, seed), returnPath));
    }


    /** Asserts a good stream is taken, with and without a return path. */
    private static void acceptsValid() throws Exception {
        byte[] stream = StreamBuilder.valid();
        Incoming.Result r = receive(stream, null, 0, 0);
        try (Machine m = r.machine()) {
            assertFalse(r.verified());
            assertEquals(stream.length, r.bytes());
            assertEquals(2, r.pages());
            assertEquals((byte) 0x5a, m.ram().host().get(ValueLayout.JAVA_BYTE, 4095));
            assertEquals(0, m.ram().host().get(ValueLayout.JAVA_BYTE, 4096));
        }
        Sink sink = new Sink();
        byte[] withVerdict = Arrays.copyOf(stream, stream.length + 1);
        withVerdict[stream.length] = ReturnPath.GO;
        r = receive(withVerdict, sink, 7, 1);
        try (Machine m = r.machine()) {
            assertTrue(r.verified());
            List<ReturnPath.Message> msgs = messages(sink);
            assertEquals(List.of(ReturnPath.READY, ReturnPath.DIGESTS, ReturnPath.SHUT),
                    msgs.stream().map(ReturnPath.Message::type).toList());
            assertEquals(java.util.Map.of(Machine.RAM_NAME, RamDigest.of(m.ram()).value()), msgs.get(1).digests());
            assertEquals(0, msgs.get(2).shutStatus());
        }
    }

    /**
     * Asserts the stream is rejected at {@code offset} (or anywhere if negative) for a reason
     * containing {@code fragment}, without and with a return path, and that a good stream
     * follows fine.
     */
    private static StreamException rejects(byte[] stream, long offset, String fragment) throws Exception {
        StreamException first = null;
        for (boolean returnPath : new boolean[]{false, true}) {
            Sink sink = returnPath ? new Sink() : null;
            StreamException e = rejected(stream, sink, returnPath ? 5 : 0);
            assertTrue(e.getMessage().contains(fragment), "'" + e.getMessage() + "' lacks '" + fragment + "'");
            if (offset >= 0) {
                assertEquals(offset, e.offset(), e.getMessage());
            }
            if (returnPath) {
                List<ReturnPath.Message> msgs = messages(sink);
                assertTrue(msgs.size() >= 2, "an error and a shut: " + msgs);
                ReturnPath.Message err = msgs.get(msgs.size() - 2);
                assertEquals(ReturnPath.ERROR, err.type());
                assertEquals(e.getMessage(), err.text(), "the source hears the reason");
                assertEquals(ReturnPath.SHUT, msgs.getLast().type());
                assertEquals(1, msgs.getLast().shutStatus());
            }
            first = first == null ? e : first;
        }
        acceptsValid();
        return first;
    }

    /** @return the StreamException receiving {@code stream} throws; fails on anything else */
    private static StreamException rejected(byte[] stream, Sink sink, int maxChunk) {
        try {
            Incoming.Result r = receive(stream, sink, maxChunk, stream.length);
            r.machine().close();
            fail("accepted a bad stream of " + stream.length + " bytes");
            return null;
        } catch (StreamException e) {
            Matcher m = AT.matcher(e.getMessage());
            assertTrue(m.matches(), "names the offset: " + e.getMessage());
            assertEquals(e.offset(), Long.parseLong(m.group(1)));
            assertFalse(e.getMessage().contains("\n"), "one line");
            return e;
        } catch (Throwable t) {
            throw new AssertionError("expected a StreamException, got " + t, t);
        }
    }

    // ---- the good stream

    @Test
    void theHandMadeStreamIsGood() throws Exception {
        acceptsValid();
    }

    // ---- header and configuration

    @Test
    void badMagic() throws Exception {
        byte[] s = StreamBuilder.valid();
        s[0] = 'X';
        rejects(s, 0, "bad magic 0x5845564d");
        rejects("GET / HTTP/1.1\r\n\r\n".getBytes(StandardCharsets.US_ASCII), 0, "not a migration stream");
    }

    @Test
    void badVersion() throws Exception {
        byte[] s = StreamBuilder.valid();
        s[7] = 2;
        rejects(s, 4, "unsupported stream version 2");
    }

    @Test
    void emptyAndTinyStreams() throws Exception {
        rejects(new byte[0], 0, "truncated");
        rejects(new byte[]{0x51, 0x45}, 2, "truncated");
        // Header then EOF: no machine was ever named.
        rejects(new StreamBuilder().header().eof().bytes(), 9, "without a configuration");
    }

    @Test
    void absurdConfigurationLengthIsRefusedBeforeReading() throws Exception {
        rejects(new StreamBuilder().header().u8(QemuFormat.CONFIGURATION).u32(0x7fffffff).bytes(), 8,
                "configuration name of 2147483647 bytes");
        rejects(new StreamBuilder().header().u8(QemuFormat.CONFIGURATION).u32(-1).bytes(), 8,
                "configuration name of 4294967295 bytes");
        rejects(new StreamBuilder().header().u8(QemuFormat.CONFIGURATION).u32(0).bytes(), 8,
                "configuration name of 0 bytes");
    }

    @Test
    void configurationAskingForMoreRamThanAllowed() throws Exception {
        // 1 TiB: refused from the name alone, before any memory is reserved.
        String huge = new MachineDescription("soft", MachineConfig.of(1L << 40, 1, Workload.of(Pattern.IDLE, 0)))
                .encode();
        long start = System.nanoTime();
        rejects(new StreamBuilder().header().config(huge).bytes(), 8,
                "the source guest has 1099511627776 bytes of RAM, more than this destination accepts (67108864)");
        assertTrue(System.nanoTime() - start < 5_000_000_000L);
        // Just above the limit as well.
        String big = new MachineDescription("soft", MachineConfig.of(66 * MIB, 1, Workload.of(Pattern.IDLE, 0)))
                .encode();
        rejects(new StreamBuilder().header().config(big).ramStart().bytes(), 8, "more than this destination accepts");
    }

    @Test
    void configurationsThatAreNotFerryMachines() throws Exception {
        rejects(new StreamBuilder().header().config("pc-i440fx-9.0").bytes(), 8, "is not a Ferry machine");
        rejects(new StreamBuilder().header().config("ferry:accel=soft").bytes(), 8, "lacks 'workload'");
        rejects(new StreamBuilder().header().config(StreamBuilder.CONFIG.replace("mem=2097152", "mem=lots")).bytes(),
                8, "bad number");
        rejects(new StreamBuilder().header().config(StreamBuilder.CONFIG.replace("mem=2097152", "mem=12345")).bytes(),
                -1, "multiple of 2 MiB");
        rejects(new StreamBuilder().header().config(StreamBuilder.CONFIG.replace("accel=soft", "accel=tcg")).bytes(),
                8, "accelerator 'tcg', which this host lacks");
        rejects(new StreamBuilder().header().config(StreamBuilder.CONFIG.replace("rate=0.0", "rate=NaN")).bytes(),
                -1, "rate");
        rejects(StreamBuilder.prologue().config(StreamBuilder.CONFIG).bytes(), -1, "a second configuration section");
    }

    // ---- sections

    @Test
    void unknownSectionType() throws Exception {
        StreamBuilder b = StreamBuilder.prologue();
        long at = b.size();
        rejects(b.u8(0x42).bytes(), at, "unknown section type 0x42");
        StreamBuilder c = StreamBuilder.prologue();
        long cmd = c.size();
        rejects(c.u8(QemuFormat.COMMAND).u16(1).bytes(), cmd, "unknown section type 0x8");
    }

    @Test
    void unknownSectionIdstr() throws Exception {
        StreamBuilder b = StreamBuilder.prologue().ramBody();
        long at = b.size();
        rejects(b.section(QemuFormat.SECTION_FULL, 5, "virtio-net", 0, 1).raw(new byte[64]).bytes(), at,
                "unknown section 'virtio-net' instance 0");
        // A "ram" section must start with START, instance 0.
        StreamBuilder c = new StreamBuilder().header().config(StreamBuilder.CONFIG);
        long full = c.size();
        rejects(c.section(QemuFormat.SECTION_FULL, 0, "ram", 0, 4).bytes(), full, "unknown section 'ram'");
    }

    @Test
    void sectionsOutOfPlace() throws Exception {
        rejects(new StreamBuilder().header().ramStart().bytes(), 8, "section before the configuration");
        StreamBuilder b = StreamBuilder.prologue();
        long at = b.size();
        rejects(b.u8(QemuFormat.SECTION_PART).u32(9).eos().footer(9).bytes(), at, "part of unknown section id 9");
        StreamBuilder c = StreamBuilder.prologue();
        long again = c.size();
        rejects(c.ramStart().bytes(), again, "section id 0 started twice");
        StreamBuilder d = new StreamBuilder().header().config(StreamBuilder.CONFIG);
        long v = d.size();
        rejects(d.section(QemuFormat.SECTION_START, 0, "ram", 0, 3).bytes(), v, "RAM section version 3, expected 4");
    }

    @Test
    void sectionFooterMismatch() throws Exception {
        StreamBuilder b = StreamBuilder.prologue().u8(QemuFormat.SECTION_PART).u32(0).eos();
        long at = b.size();
        rejects(b.footer(3).bytes(), at, "section footer for 3 closes section 0");
        StreamBuilder c = StreamBuilder.prologue().u8(QemuFormat.SECTION_PART).u32(0).eos();
        long missing = c.size();
        rejects(c.eof().bytes(), missing, "missing section footer for section 0");
        StreamBuilder d = StreamBuilder.prologue().ramBody().section(QemuFormat.SECTION_FULL, 1, "cpu", 0, 1)
                .raw(StreamBuilder.CPU_STATE);
        long cpu = d.size();
        rejects(d.footer(0).bytes(), cpu, "section footer for 0 closes section 1");
    }

    @Test
    void vcpuStateRepeatedMissingOrBad() throws Exception {
        StreamBuilder b = StreamBuilder.prologue().ramBody().cpu(1, 0);
        long at = b.size();
        rejects(b.cpu(2, 0).eof().bytes(), at, "unknown section 'cpu' instance 0 (no such device here, or sent twice)");
        StreamBuilder c = StreamBuilder.prologue().ramBody().cpu(1, 0);
        long same = c.size();
        rejects(c.cpu(1, 0).eof().bytes(), same, "section id 1 started twice");
        StreamBuilder d = StreamBuilder.prologue().ramBody();
        long out = d.size();
        rejects(d.cpu(1, 5).bytes(), out, "unknown section 'cpu' instance 5");
        StreamBuilder e = StreamBuilder.prologue().ramBody();
        long neg = e.size();
        rejects(e.cpu(1, -1).bytes(), neg, "unknown section 'cpu' instance -1");
        StreamBuilder f = StreamBuilder.prologue().ramBody();
        long v2 = f.size();
        rejects(f.section(QemuFormat.SECTION_FULL, 1, "cpu", 0, 2).bytes(), v2,
                "device cpu0: cpu: the stream has state version 2, newer than this side's 1");
        rejects(StreamBuilder.prologue().ramBody().eof().description(StreamBuilder.DESCRIPTION).bytes(), -1,
                "stream ends without the state of vCPU 0");
        // A cursor beyond the vCPU's slice: the accelerator refuses it.
        byte[] bad = ByteBuffer.allocate(24).putLong(1L << 40).putLong(1).putLong(0).array();
        rejects(StreamBuilder.prologue().ramBody().section(QemuFormat.SECTION_FULL, 1, "cpu", 0, 1).raw(bad)
                .footer(1).eof().description(StreamBuilder.DESCRIPTION).bytes(), -1,
                "device cpu0 refused its state: cpu: post-load refused the state: bad page cursor state");
    }

    // ---- RAM

    @Test
    void pageOffsetOutsideTheBlock() throws Exception {
        for (long offset : new long[]{StreamBuilder.RAM, StreamBuilder.RAM + 4096, 1L << 40,
                0x7ffffffffffff000L, 0x8000000000000000L, 0xfffffffffffff000L}) {
            StreamBuilder b = StreamBuilder.prologue().u8(QemuFormat.SECTION_PART).u32(0);
            long at = b.size();
            rejects(b.page(offset, (byte) 1).eos().footer(0).bytes(), at, "outside RAM block pc.ram");
            StreamBuilder z = StreamBuilder.prologue().u8(QemuFormat.SECTION_PART).u32(0).page(0, (byte) 1);
            long zat = z.size();
            rejects(z.zeroPageContinue(offset).eos().footer(0).bytes(), zat, "outside RAM block pc.ram");
        }
    }

    @Test
    void unknownRamFlags() throws Exception {
        for (int flags : new int[]{0x01, 0x40, 0x80, 0x100, 0x200, 0x800, 0x40 | QemuFormat.RAM_FLAG_EOS}) {
            StreamBuilder b = StreamBuilder.prologue().u8(QemuFormat.SECTION_PART).u32(0);
            long at = b.size();
            rejects(b.u64(flags).raw(new byte[64]).bytes(), at, "unknown RAM flags");
        }
        // A page and a zero page at once is no known kind of page (QEMU: unknown combination).
        StreamBuilder b = StreamBuilder.prologue().u8(QemuFormat.SECTION_PART).u32(0);
        long at = b.size();
        rejects(b.u64(QemuFormat.RAM_FLAG_ZERO | QemuFormat.RAM_FLAG_PAGE).str8("pc.ram").raw(new byte[4097]).eos()
                .footer(0).bytes(), at, "RAM flags");
    }

    @Test
    void ramBlockListAndNames() throws Exception {
        StreamBuilder b = new StreamBuilder().header().config(StreamBuilder.CONFIG)
                .section(QemuFormat.SECTION_START, 0, "ram", 0, 4);
        long at = b.size();
        rejects(b.u64((4L << 20) | QemuFormat.RAM_FLAG_MEM_SIZE).str8("pc.ram").u64(4L << 20).eos().footer(0)
                .bytes(), at, "source has 4194304 bytes of RAM, this machine 2097152");
        rejects(new StreamBuilder().header().config(StreamBuilder.CONFIG).section(QemuFormat.SECTION_START, 0, "ram", 0, 4)
                .u64(StreamBuilder.RAM | QemuFormat.RAM_FLAG_MEM_SIZE).str8("pc.rom").u64(StreamBuilder.RAM).eos()
                .footer(0).bytes(), -1, "unknown RAM block 'pc.rom'");
        StreamBuilder c = new StreamBuilder().header().config(StreamBuilder.CONFIG)
                .section(QemuFormat.SECTION_START, 0, "ram", 0, 4);
        long early = c.size();
        rejects(c.page(0, (byte) 1).bytes(), early, "RAM page before the RAM block list");
        StreamBuilder d = StreamBuilder.prologue().u8(QemuFormat.SECTION_PART).u32(0);
        long twice = d.size();
        rejects(d.u64(StreamBuilder.RAM | QemuFormat.RAM_FLAG_MEM_SIZE).bytes(), twice, "RAM block list sent twice");
        StreamBuilder e = StreamBuilder.prologue().u8(QemuFormat.SECTION_PART).u32(0);
        long unknown = e.size();
        rejects(e.u64(QemuFormat.RAM_FLAG_PAGE).str8("pc.rom").raw(new byte[4096]).bytes(), -1,
                "page for unknown RAM block 'pc.rom'");
        assertTrue(unknown > 0);
        StreamBuilder f = StreamBuilder.prologue().u8(QemuFormat.SECTION_PART).u32(0);
        long cont = f.size();
        rejects(f.zeroPageContinue(0).bytes(), cont, "RAM page continues no block");
    }

    // ---- after the end

    @Test
    void vmDescriptionLengthAbsurd() throws Exception {
        StreamBuilder b = StreamBuilder.prologue().ramBody().cpu(1, 0).eof();
        long at = b.size();
        rejects(b.u8(QemuFormat.VMDESCRIPTION).u32(0x7fffffff).bytes(), at, "VM description of 2147483647 bytes");
        StreamBuilder c = StreamBuilder.prologue().ramBody().cpu(1, 0).eof();
        long neg = c.size();
        rejects(c.u8(QemuFormat.VMDESCRIPTION).u32(0x80000000).bytes(), neg, "VM description of 2147483648 bytes");
        StreamBuilder d = StreamBuilder.prologue().ramBody().cpu(1, 0).eof();
        long junk = d.size();
        rejects(d.u8('A').bytes(), junk, "unexpected byte 0x41 after the end of the stream");
    }

    @Test
    void aStreamEndingRightAfterEofNeedsNoDescriptionInAFile() throws Exception {
        byte[] s = StreamBuilder.prologue().ramBody().cpu(1, 0).eof().bytes();
        Incoming.Result r = receive(s, null, 3, 3);
        try (Machine m = r.machine()) {
            assertEquals(s.length, r.bytes());
            assertTrue(m.vcpuFailure().isEmpty());
        }
        // Over a socket the description and the verdict must follow.
        StreamException e = rejected(s, new Sink(), 5);
        assertEquals(s.length, e.offset());
        assertTrue(e.getMessage().contains("truncated"), e.getMessage());
    }

    @Test
    void sourceAbortOrSilenceAfterTheStream() throws Exception {
        byte[] s = StreamBuilder.valid();
        for (int verdict : new int[]{ReturnPath.ABORT, 'x'}) {
            byte[] v = Arrays.copyOf(s, s.length + 1);
            v[s.length] = (byte) verdict;
            Sink sink = new Sink();
            try {
                receive(v, sink, 0, 0).machine().close();
                fail("ran the guest without GO");
            } catch (StreamException e) {
                fail("a verdict is not a stream error: " + e);
            } catch (java.io.IOException e) {
                assertTrue(e.getMessage().contains("stopped and discarded"), e.getMessage());
            }
            assertEquals(1, messages(sink).getLast().shutStatus());
        }
        acceptsValid();
    }

    // ---- truncation of a real saved stream

    /** @return a real stream saved by Migration from a 2 MiB guest with two written pages */
    private static byte[] savedStream() {
        try (TrackedMachine tm = TestSupport.guest(StreamBuilder.RAM, 1, TestSupport.workload(Pattern.IDLE, 0, 5))) {
            tm.machine().ram().host().asSlice(0, 4096).fill((byte) 0xa5);
            tm.machine().ram().host().asSlice(StreamBuilder.RAM - 4096, 4096).fill((byte) 0xc3);
            Sink sink = new Sink();
            MigrationStats st = new Migration(tm, new TestSupport.WriteConnection(sink), TestSupport.params()).run(p -> {
            });
            assertEquals(MigrationStatus.COMPLETED, st.status(), st.error());
            byte[] b = sink.bytes();
            assertEquals(st.transferred(), b.length);
            return b;
        }
    }

    @Test
    void everyTruncationOfASavedStreamIsAStreamErrorAtThatByte() throws Exception {
        byte[] full = savedStream();
        // The JSON description closes the stream: 0x00 (EOF), 0x06, be32 length, JSON.
        int json = lastIndexOf(full, "{\"page_size\"".getBytes(StandardCharsets.US_ASCII));
        int eofEnd = json - 5;
        assertEquals(QemuFormat.VMDESCRIPTION, full[eofEnd]);
        assertEquals(QemuFormat.EOF, full[eofEnd - 1]);
        assertEquals(full.length - json, ByteBuffer.wrap(full, eofEnd + 1, 4).getInt());

        Random random = new Random(42);
        int tested = 0;
        int tail = lastIndexOf(full, new byte[]{(byte) 0xc3, (byte) 0xc3, (byte) 0xc3, (byte) 0xc3}) + 4;
        for (int cut = 0; cut <= full.length; cut++) {
            boolean complete = cut == eofEnd || cut == full.length;
            // Every cut through the header, configuration and RAM setup, the vCPU state and
            // the end, and around each full page; in the long runs of zero pages and page data
            // a dense sample (each machine built costs a few milliseconds).
            boolean dense = cut < 300 || cut >= tail - 16 || boundary(full, cut);
            boolean inPageData = cut < full.length && (full[cut] == (byte) 0xa5 || full[cut] == (byte) 0xc3);
            if (!complete && !dense && cut % (inPageData ? 257 : 17) != 0) {
                continue;
            }
            tested++;
            ReadConnection c = new ReadConnection(new ChunkedChannel(full, cut, random.nextBoolean() ? 0 : 13, cut), null);
            if (complete) {
                INCOMING.receive(c).machine().close();
                continue;
            }
            try {
                Incoming.Result r = INCOMING.receive(c);
                r.machine().close();
                fail("accepted the stream cut at " + cut + " of " + full.length);
            } catch (StreamException e) {
                assertEquals(cut, e.offset(), e.getMessage());
                assertTrue(e.getMessage().startsWith("bad migration stream at byte " + cut + ": "), e.getMessage());
                assertTrue(e.getMessage().contains("truncated"), e.getMessage());
            } catch (Throwable t) {
                throw new AssertionError("cut at " + cut + ": expected a StreamException, got " + t, t);
            }
        }
        assertTrue(tested > 600, "tested " + tested + " cuts of " + full.length);
        // And the whole stream still loads afterwards, with the pages in place.
        Incoming.Result r = INCOMING.receive(new ReadConnection(new ChunkedChannel(full, full.length, 0, 0), null));
        try (Machine m = r.machine()) {
            assertEquals((byte) 0xa5, m.ram().host().get(ValueLayout.JAVA_BYTE, 0));
            assertEquals((byte) 0xc3, m.ram().host().get(ValueLayout.JAVA_BYTE, StreamBuilder.RAM - 1));
            assertEquals(StreamBuilder.RAM / 4096, r.pages());
        }
    }

    /** @return whether {@code cut} is within 16 bytes of where a full page's data begins or ends */
    private static boolean boundary(byte[] s, int cut) {
        // Page data is 4096 bytes of one fill value (0xa5 or 0xc3) here.
        int from = Math.max(1, cut - 16);
        int to = Math.min(s.length, cut + 16);
        for (int i = from; i < to; i++) {
            boolean fill = s[i] == (byte) 0xa5 || s[i] == (byte) 0xc3;
            boolean prevFill = s[i - 1] == (byte) 0xa5 || s[i - 1] == (byte) 0xc3;
            if (fill != prevFill) {
                return true;
            }
        }
        return false;
    }

    private static int lastIndexOf(byte[] hay, byte[] needle) {
        outer:
        for (int i = hay.length - needle.length; i >= 0; i--) {
            for (int j = 0; j < needle.length; j++) {
                if (hay[i + j] != needle[j]) {
                    continue outer;
                }
            }
            return i;
        }
        throw new AssertionError("not found");
    }

    /**
     * A zero page costs nothing on a page that never held data (no read, no fault), but one
     * that follows data on the same page clears it, and the digest follows.
     */
    @Test
    void aZeroPageClearsWhatAnEarlierPageWrote() throws Exception {
        byte[] stream = StreamBuilder.prologue()
                .u8(QemuFormat.SECTION_PART).u32(0).page(0, (byte) 0x5a).page(8192, (byte) 0x11)
                .zeroPageContinue(0).zeroPageContinue(4096).eos().footer(0)
                .u8(QemuFormat.SECTION_END).u32(0).eos().footer(0)
                .cpu(1, 0).eof().description(StreamBuilder.DESCRIPTION).u8(ReturnPath.GO).bytes();
        Sink sink = new Sink();
        try (Machine m = receive(stream, sink, 0, 1).machine()) {
            MemorySegment ram = m.ram().host();
            assertEquals(-1, ram.asSlice(0, 4096).mismatch(MemorySegment.ofArray(new byte[4096])), "page 0 cleared");
            assertEquals(0x11, ram.get(java.lang.foreign.ValueLayout.JAVA_BYTE, 8192));
            assertEquals(java.util.Map.of(Machine.RAM_NAME, RamDigest.of(m.ram()).value()), messages(sink).get(1).digests(),
                    "the digest the destination reports is its memory's");
        }
    }

    @Test
    void randomCorruptionNeverEscapesAsAnotherException() throws Exception {
        byte[] good = StreamBuilder.valid();
        Random random = new Random(2024);
        int accepted = 0;
        for (int i = 0; i < 400; i++) {
            byte[] s = good.clone();
            int flips = 1 + random.nextInt(3);
            for (int f = 0; f < flips; f++) {
                // Aim at the structure (everything but page 0's data) most of the time.
                int at = random.nextInt(s.length);
                s[at] = (byte) random.nextInt(256);
            }
            try {
                INCOMING.receive(new ReadConnection(new ChunkedChannel(s, s.length, 0, 0), null)).machine().close();
                accepted++;
            } catch (StreamException e) {
                assertTrue(AT.matcher(e.getMessage()).matches(), e.getMessage());
            } catch (Throwable t) {
                throw new AssertionError("corruption " + i + ": expected a StreamException, got " + t, t);
            }
        }
        assertTrue(accepted < 400, "some corruption must be noticed");
        acceptsValid();
        assertArrayEquals(good, StreamBuilder.valid(), "streams are built the same each time");
    }
}
