package dev.ferry.migration;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.ferry.machine.Machine;
import dev.ferry.migration.TestSupport.ChunkedChannel;
import dev.ferry.migration.TestSupport.ReadConnection;
import dev.ferry.migration.TestSupport.Sink;
import dev.ferry.migration.stream.StreamException;
import dev.ferry.migration.stream.StreamReader;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;

import static dev.ferry.migration.TestSupport.messages;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Fuzzes the destination (Jazzer): the stream reader against a model of its input, and the whole
 * load of a migration stream, saved (no return path) or over a socket (digests and the source's
 * verdict on the return path). Whatever the bytes, the destination either takes the guest or
 * rejects the stream with a {@link StreamException} inside it; it never throws anything else,
 * never hangs, and never allocates by a length it has not checked.
 *
 * <p>By default each fuzz test runs its seeds ({@code DestinationFuzzTestInputs} in the test
 * resources: streams saved by real migrations, see {@link DestinationFuzzSeeds}, and any input
 * a fuzzing run found) as a regression test. To fuzz one of them (about 10^6 inputs):
 *
 * <pre>JAZZER_FUZZ=1 ./mvnw -o test -pl migration -Dtest='DestinationFuzzTest#savedStream'</pre>
 */
class DestinationFuzzTest {

    private static final Incoming INCOMING = TestSupport.incoming(DestinationFuzzSeeds.MAX_RAM);

    /** A stream saved to a file: loaded without a return path. */
    @FuzzTest(maxExecutions = 1_000_000, maxDuration = "2h")
    void savedStream(byte[] stream) throws IOException {
        Incoming.Result r;
        try {
            r = INCOMING.receive(new ReadConnection(new ChunkedChannel(stream, stream.length, 0, 0), null));
        } catch (StreamException e) {
            inside(e, stream);
            return;
        }
        try (Machine m = r.machine()) {
            assertTrue(r.bytes() <= stream.length, "read " + r.bytes() + " of " + stream.length + " bytes");
            assertNotEquals(Incoming.Verification.BY_SOURCE, r.verification(), "no source to verify it");
            assertTrue(m.ram().size() <= DestinationFuzzSeeds.MAX_RAM);
        }
    }

    /**
     * A stream over a socket: the destination says READY, reports its digests and waits for the
     * verdict, the byte after the stream; every failure tells the source why, then SHUT.
     */
    @FuzzTest(maxExecutions = 1_000_000, maxDuration = "2h")
    void socketStream(byte[] stream) throws IOException {
        Sink returnPath = new Sink();
        Incoming.Result r;
        try {
            r = INCOMING.receive(new ReadConnection(new ChunkedChannel(stream, stream.length, 0, 0), returnPath));
        } catch (StreamException e) {
            inside(e, stream);
            failureReported(returnPath, e.getMessage());
            return;
        } catch (IOException e) {
            // The source's verdict was not GO: the only failure that is not the stream's.
            assertNull(e.getCause(), () -> "unexpected failure: " + e);
            assertTrue(e.getMessage().endsWith("the guest here was stopped and discarded"), e.getMessage());
            failureReported(returnPath, e.getMessage());
            return;
        }
        try (Machine m = r.machine()) {
            assertEquals(Incoming.Verification.BY_SOURCE, r.verification());
            List<ReturnPath.Message> said = messages(returnPath);
            assertEquals(List.of(ReturnPath.READY, ReturnPath.DIGESTS, ReturnPath.SHUT),
                    said.stream().map(ReturnPath.Message::type).toList());
            assertEquals(0, said.getLast().shutStatus());
            assertTrue(m.ram().size() <= DestinationFuzzSeeds.MAX_RAM);
        }
    }

    /**
     * The stream reader against a model (a {@link ByteBuffer} over the same bytes): a program of
     * reads, the channel handing out chunks of up to {@code maxChunk} bytes. Every read returns
     * the model's bytes; a read past the end is a {@link StreamException} at the end.
     */
    @FuzzTest(maxExecutions = 1_000_000, maxDuration = "2h")
    void streamReader(FuzzedDataProvider data) throws IOException {
        byte[] program = data.consumeBytes(data.consumeInt(0, 48));
        int maxChunk = data.consumeInt(0, 64);
        byte[] stream = data.consumeRemainingAsBytes();
        StreamReader in = new StreamReader(new ChunkedChannel(stream, stream.length, maxChunk, stream.length));
        ByteBuffer model = ByteBuffer.wrap(stream);
        try (Arena arena = Arena.ofConfined()) {
            for (byte op : program) {
                assertEquals(model.position(), in.offset());
                int kind = (op & 0xff) % 9;
                int n = (op & 0xff) / 9; // 0 to 28
                int need = switch (kind) {
                    case 0 -> 1;
                    case 1 -> 2;
                    case 2 -> 4;
                    case 3 -> 8;
                    case 4 -> n * 7;
                    case 5 -> model.hasRemaining() ? 1 + (model.get(model.position()) & 0xff) : 1;
                    case 6 -> n * 11;
                    case 7 -> n * 13;
                    default -> 0; // a peek never fails
                };
                if (model.remaining() < need) {
                    MemorySegment dst = arena.allocate(Math.max(1, n * 13));
                    StreamException e = assertThrows(StreamException.class, () -> read(in, kind, n, dst));
                    assertEquals(stream.length, e.offset(), e.getMessage());
                    return;
                }
                switch (kind) {
                    case 0 -> assertEquals(model.get() & 0xff, in.get8());
                    case 1 -> assertEquals(model.getShort() & 0xffff, in.get16());
                    case 2 -> assertEquals(model.getInt(), in.get32());
                    case 3 -> assertEquals(model.getLong(), in.get64());
                    case 4 -> assertArrayEquals(take(model, n * 7), in.getBytes(n * 7));
                    case 5 -> assertEquals(new String(take(model, 1 + (model.get(model.position()) & 0xff)), 1,
                            need - 1, StandardCharsets.UTF_8), in.getString8());
                    case 6 -> {
                        in.skip(n * 11);
                        take(model, n * 11);
                    }
                    case 7 -> {
                        MemorySegment dst = arena.allocate(Math.max(1, n * 13));
                        in.getInto(dst.asSlice(0, n * 13));
                        assertArrayEquals(take(model, n * 13), dst.asSlice(0, n * 13).toArray(
                                java.lang.foreign.ValueLayout.JAVA_BYTE));
                    }
                    default -> {
                        int len = Math.min(n * 9, 256);
                        byte[] expected = new byte[Math.min(len, model.remaining())];
                        model.get(model.position(), expected);
                        assertArrayEquals(expected, in.peek(len));
                    }
                }
            }
            assertEquals(model.position(), in.offset());
        }
    }

    /** The seeds are streams the destination takes whole: a changed format must regenerate them. */
    @Test
    void theSeedsAreStreamsThisDestinationTakes() throws IOException {
        Map<String, Map<String, byte[]>> fresh = DestinationFuzzSeeds.generate();
        for (Map.Entry<String, Map<String, byte[]>> method : fresh.entrySet()) {
            for (String name : method.getValue().keySet()) {
                String resource = "/" + DestinationFuzzSeeds.INPUTS.resolve(method.getKey()).resolve(name);
                byte[] seed;
                try (InputStream s = DestinationFuzzTest.class.getResourceAsStream(resource)) {
                    assertNotNull(s, resource + " is missing: run DestinationFuzzSeeds (see its Javadoc)");
                    seed = s.readAllBytes();
                }
                boolean socket = method.getKey().equals(DestinationFuzzSeeds.SOCKET);
                Sink returnPath = socket ? new Sink() : null;
                try {
                    Incoming.Result r = INCOMING.receive(new ReadConnection(
                            new ChunkedChannel(seed, seed.length, 0, 0), returnPath));
                    r.machine().close();
                    assertEquals(socket ? Incoming.Verification.BY_SOURCE : name.equals("hand-made")
                            ? Incoming.Verification.NONE : Incoming.Verification.BY_SAVED_DIGESTS, r.verification(), resource);
                    assertEquals(seed.length, r.bytes(), resource + " is read whole");
                } catch (IOException e) {
                    boolean abort = name.endsWith("-abort");
                    assertTrue(abort && !(e instanceof StreamException), resource + " no longer loads (" + e.getMessage()
                            + "): the stream format changed; regenerate the seeds with DestinationFuzzSeeds");
                }
            }
        }
    }

    private static void read(StreamReader in, int kind, int n, MemorySegment dst) throws IOException {
        switch (kind) {
            case 0 -> in.get8();
            case 1 -> in.get16();
            case 2 -> in.get32();
            case 3 -> in.get64();
            case 4 -> in.getBytes(n * 7);
            case 5 -> in.getString8();
            case 6 -> in.skip(n * 11);
            default -> in.getInto(dst.asSlice(0, n * 13));
        }
    }

    private static byte[] take(ByteBuffer model, int n) {
        byte[] b = new byte[n];
        model.get(b);
        return b;
    }

    /** A rejection names a byte inside the stream, or its end. */
    private static void inside(StreamException e, byte[] stream) {
        assertTrue(e.offset() >= 0 && e.offset() <= stream.length,
                () -> "offset " + e.offset() + " outside the " + stream.length + "-byte stream: " + e.getMessage());
        assertTrue(e.getMessage().startsWith("bad migration stream at byte "), e.getMessage());
    }

    /** The source heard why, then SHUT with a failure status. */
    private static void failureReported(Sink returnPath, String why) throws IOException {
        List<ReturnPath.Message> said = messages(returnPath);
        assertTrue(said.size() >= 2, () -> "an error and a shut: " + said);
        assertEquals(ReturnPath.ERROR, said.get(said.size() - 2).type());
        assertEquals(why, said.get(said.size() - 2).text());
        assertEquals(ReturnPath.SHUT, said.getLast().type());
        assertEquals(1, said.getLast().shutStatus());
    }

}
