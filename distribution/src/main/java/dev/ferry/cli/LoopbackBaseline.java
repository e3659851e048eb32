package dev.ferry.cli;

import dev.ferry.memory.MemfdRamBlock;
import dev.ferry.migration.channel.Channels;
import dev.ferry.migration.channel.Connection;
import dev.ferry.migration.channel.MigrationUri;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.WritableByteChannel;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;

/**
 * The baseline {@code ferry bench migration} sets its throughput beside: the same bytes over
 * the same kind of connection with nothing of migration in it. One guest-sized RAM block is
 * copied into another through loopback TCP, each end copying through a buffer of its own as
 * the stream writer and reader do; no bitmap, no page headers, no zero check, no digest.
 */
final class LoopbackBaseline {

    private static final int BUFFER = 256 << 10;

    private LoopbackBaseline() {
    }

    /** @return GiB/s of one copy of {@code from} into {@code to}, which must be as large */
    static double measure(MemfdRamBlock from, MemfdRamBlock to) throws IOException, InterruptedException {
        long size = from.size();
        try (Channels.Listener listener = Channels.listen(MigrationUri.parse("tcp:127.0.0.1:0"))) {
            CompletableFuture<Void> received = new CompletableFuture<>();
            Thread.ofPlatform().name("baseline-receive").daemon().start(() -> {
                try (Connection c = listener.accept()) {
                    receive(c.streamIn(), to.host(), size);
                    received.complete(null);
                } catch (Throwable e) {
                    received.completeExceptionally(e);
                }
            });
            long start = System.nanoTime();
            try (Connection c = Channels.connect(MigrationUri.parse(listener.address()))) {
                send(c.streamOut(), from.host(), size);
                received.get();
            } catch (ExecutionException e) {
                throw new IOException("baseline receiver failed: " + e.getCause().getMessage(), e.getCause());
            }
            return size / (double) (1L << 30) / ((System.nanoTime() - start) / 1e9);
        }
    }

    private static void send(WritableByteChannel out, MemorySegment ram, long size) throws IOException {
        ByteBuffer buffer = ByteBuffer.allocateDirect(BUFFER);
        MemorySegment memory = MemorySegment.ofBuffer(buffer);
        for (long off = 0; off < size; off += BUFFER) {
            int n = (int) Math.min(BUFFER, size - off);
            MemorySegment.copy(ram, off, memory, 0, n);
            buffer.clear().limit(n);
            while (buffer.hasRemaining()) {
                out.write(buffer);
            }
        }
    }

    private static void receive(ReadableByteChannel in, MemorySegment ram, long size) throws IOException {
        ByteBuffer buffer = ByteBuffer.allocateDirect(BUFFER);
        MemorySegment memory = MemorySegment.ofBuffer(buffer);
        long off = 0;
        while (off < size) {
            buffer.clear();
            int n = in.read(buffer);
            if (n < 0) {
                throw new IOException("connection closed after " + off + " of " + size + " bytes");
            }
            MemorySegment.copy(memory, 0, ram, off, n);
            off += n;
        }
    }
}
