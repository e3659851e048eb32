package dev.ferry.migration;

import dev.ferry.machine.MachineConfig;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import dev.ferry.migration.bootstrap.Bootstrap;
import dev.ferry.migration.bootstrap.TrackedMachine;
import dev.ferry.migration.channel.Connection;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.WritableByteChannel;
import java.time.Duration;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicBoolean;

/** Guests, destinations and connections for the migration tests (soft accelerator only). */
final class TestSupport {

    static final long MIB = 1L << 20;

    private static Bootstrap bootstrap;

    private TestSupport() {
    }

    static synchronized Bootstrap bootstrap() {
        if (bootstrap == null) {
            bootstrap = Bootstrap.create();
        }
        return bootstrap;
    }

    /** @return a paused soft guest with the soft tracker, RAM not preallocated */
    static TrackedMachine guest(long ramBytes, int vcpus, Workload w) {
        Bootstrap b = bootstrap();
        return b.build(b.plan("soft", "soft", Map.of()), MachineConfig.of(ramBytes, vcpus, w).withPreallocate(false));
    }

    static Workload workload(Pattern p, double rateMiBps, long seed) {
        return new Workload(p, 0, 0, rateMiBps, Workload.PAGE_SIZE, 0.1, 0.9, seed);
    }

    /** @return a destination with the soft accelerator that accepts guests up to {@code maxRam} */
    static Incoming incoming(long maxRam) {
        return bootstrap().incoming(maxRam, false, Incoming.DeviceLoad.BATCHED);
    }

    /** QEMU's defaults with a timeout that keeps a broken test short. */
    static MigrationParameters params() {
        return MigrationParameters.defaults().withTimeout(Duration.ofSeconds(30));
    }

    /** @return the messages the destination sent on its return path */
    static java.util.List<ReturnPath.Message> messages(Sink sink) throws IOException {
        ReadableByteChannel in = java.nio.channels.Channels.newChannel(new java.io.ByteArrayInputStream(sink.bytes()));
        java.util.List<ReturnPath.Message> out = new java.util.ArrayList<>();
        while (true) {
            try {
                out.add(ReturnPath.receive(in));
            } catch (java.io.EOFException end) {
                return out;
            }
        }
    }

    /** A return path's far end that keeps what the destination says. */
    static final class Sink implements WritableByteChannel {
        private final ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        private volatile boolean open = true;

        @Override
        public synchronized int write(ByteBuffer src) throws IOException {
            if (!open) {
                throw new ClosedChannelException();
            }
            int n = src.remaining();
            byte[] b = new byte[n];
            src.get(b);
            bytes.write(b, 0, n);
            return n;
        }

        synchronized byte[] bytes() {
            return bytes.toByteArray();
        }

        @Override
        public boolean isOpen() {
            return open;
        }

        @Override
        public void close() {
            open = false;
        }
    }

    /** A destination's connection reading a given channel, with or without a return path. */
    record ReadConnection(ReadableByteChannel in, Sink returnPath) implements Connection {
        @Override
        public String description() {
            return "test";
        }

        @Override
        public WritableByteChannel streamOut() {
            throw new UnsupportedOperationException("a destination's connection: nothing to write the stream to");
        }

        @Override
        public ReadableByteChannel streamIn() {
            return in;
        }

        @Override
        public Optional<WritableByteChannel> returnOut() {
            return Optional.ofNullable(returnPath);
        }

        @Override
        public Optional<ReadableByteChannel> returnIn() {
            return Optional.empty();
        }

        @Override
        public void close() throws IOException {
            in.close();
            if (returnPath != null) {
                returnPath.close();
            }
        }
    }

    /** A source's connection writing into memory, like a file: no return path. */
    record WriteConnection(Sink out) implements Connection {
        @Override
        public String description() {
            return "memory";
        }

        @Override
        public WritableByteChannel streamOut() {
            return out;
        }

        @Override
        public ReadableByteChannel streamIn() {
            throw new UnsupportedOperationException("a source's connection: no stream to read");
        }

        @Override
        public Optional<WritableByteChannel> returnOut() {
            return Optional.empty();
        }

        @Override
        public Optional<ReadableByteChannel> returnIn() {
            return Optional.empty();
        }

        @Override
        public void close() {
            out.close();
        }
    }

    /** A channel over bytes that hands out at most a few bytes per read, as a slow socket might. */
    static final class ChunkedChannel implements ReadableByteChannel {
        private final byte[] data;
        private final int limit;
        private final java.util.Random random;
        private int pos;
        private boolean open = true;

        ChunkedChannel(byte[] data, int limit, int maxChunk, long seed) {
            this.data = data;
            this.limit = limit;
            this.random = maxChunk > 0 ? new java.util.Random(seed) : null;
            this.maxChunk = maxChunk;
        }

        private final int maxChunk;

        @Override
        public int read(ByteBuffer dst) throws IOException {
            if (!open) {
                throw new ClosedChannelException();
            }
            if (pos >= limit) {
                return -1;
            }
            int n = Math.min(dst.remaining(), limit - pos);
            if (random != null) {
                n = Math.min(n, 1 + random.nextInt(maxChunk));
            }
            dst.put(data, pos, n);
            pos += n;
            return n;
        }

        @Override
        public boolean isOpen() {
            return open;
        }

        @Override
        public void close() {
            open = false;
        }
    }

    /** A connection that hands everything to {@code inner}; a test overrides the part it breaks. */
    abstract static class ForwardingConnection implements Connection {
        final Connection inner;

        ForwardingConnection(Connection inner) {
            this.inner = inner;
        }

        @Override
        public WritableByteChannel streamOut() {
            return inner.streamOut();
        }

        @Override
        public ReadableByteChannel streamIn() {
            return inner.streamIn();
        }

        @Override
        public Optional<WritableByteChannel> returnOut() {
            return inner.returnOut();
        }

        @Override
        public Optional<ReadableByteChannel> returnIn() {
            return inner.returnIn();
        }

        @Override
        public void close() throws IOException {
            inner.close();
        }
    }

    /**
     * The source's end of a connection that is cut after {@code limit} bytes of stream: it
     * writes exactly that many, closes the real connection and fails the write.
     */
    static final class CuttingConnection extends ForwardingConnection {
        private final long limit;
        private long written;
        final AtomicBoolean cut = new AtomicBoolean();
        private final WritableByteChannel out;

        CuttingConnection(Connection inner, long limit) {
            super(inner);
            this.limit = limit;
            this.out = new WritableByteChannel() {
                @Override
                public int write(ByteBuffer src) throws IOException {
                    long allowed = limit - written;
                    int n = (int) Math.min(src.remaining(), Math.max(0, allowed));
                    ByteBuffer part = src.slice(src.position(), n);
                    while (part.hasRemaining()) {
                        inner.streamOut().write(part);
                    }
                    src.position(src.position() + n);
                    written += n;
                    if (src.hasRemaining()) {
                        cut.set(true);
                        inner.close();
                        throw new IOException("test cut the connection after " + limit + " bytes");
                    }
                    return n;
                }

                @Override
                public boolean isOpen() {
                    return inner.streamOut().isOpen();
                }

                @Override
                public void close() throws IOException {
                    inner.close();
                }
            };
        }

        @Override
        public String description() {
            return "cut after " + limit + " bytes";
        }

        @Override
        public WritableByteChannel streamOut() {
            return out;
        }
    }
}
