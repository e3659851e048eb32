package dev.ferry.migration;

import dev.ferry.machine.Guests;
import dev.ferry.machine.Machine;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import dev.ferry.migration.bootstrap.TrackedMachine;
import dev.ferry.migration.channel.Channels;
import dev.ferry.migration.channel.Connection;
import dev.ferry.migration.channel.MigrationUri;
import dev.ferry.migration.stream.StreamException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ReadableByteChannel;
import java.time.Duration;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import static dev.ferry.migration.TestSupport.MIB;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Migrations that fail, are cancelled or time out: the source reports why, and its guest goes
 * on running with dirty logging off and no throttle, ready to be migrated again.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class MigrationFailureTest {

    private static final long RAM = 16 * MIB;
    private static final long WORKING_SET = 4 * MIB;

    /** A guest writing random pages of its first 4 MiB, every one of which holds data already. */
    private static TrackedMachine busyGuest(double rateMiBps, long seed) {
        Workload w = TestSupport.workload(Pattern.RANDOM, rateMiBps, seed).withWorkingSet(0, WORKING_SET);
        TrackedMachine tm = TestSupport.guest(RAM, 1, w);
        // Not started yet: fill the working set directly, so the stream carries 4 MiB of pages.
        tm.machine().ram().host().asSlice(0, WORKING_SET).fill((byte) 0x77);
        return tm;
    }

    /** A destination receiving in the background. */
    private static CompletableFuture<Incoming.Result> receiveAsync(Incoming incoming, Connection c) {
        CompletableFuture<Incoming.Result> f = new CompletableFuture<>();
        Thread.ofPlatform().daemon().name("test-destination").start(() -> {
            try (c) {
                f.complete(incoming.receive(c));
            } catch (Throwable e) {
                f.completeExceptionally(e);
            }
        });
        return f;
    }

    /** The source after a failed migration: guest running, no dirty logging, no throttle. */
    private static void assertSourceRecovered(TrackedMachine src, MigrationStats stats, MigrationStatus expected) {
        assertEquals(expected, stats.status(), stats.error());
        assertFalse(stats.error().isBlank(), "a reason");
        assertFalse(stats.error().contains("\n"), stats.error());
        Machine m = src.machine();
        assertFalse(m.memory().globalDirtyLog(), "dirty logging stopped");
        assertEquals(0, m.throttle());
        assertEquals(0, stats.throttlePercent());
        assertTrue(m.vcpuFailure().isEmpty());
        Guests.awaitWrites(m, 50);
        assertEquals(expected.qemuName(), stats.toQemuMap().get("status"));
        assertEquals(stats.error(), stats.toQemuMap().get("error-desc"));
        assertFalse(stats.toQemuMap().containsKey("downtime"), "no downtime for a migration that did not end");
    }

    /** The destination's side ended with an error, never a running guest. */
    private static Throwable destinationFailed(CompletableFuture<Incoming.Result> f) throws Exception {
        ExecutionException e = assertThrows(ExecutionException.class, () -> f.get(20, TimeUnit.SECONDS));
        assertInstanceOf(IOException.class, e.getCause(), "the destination fails with an IOException: " + e.getCause());
        return e.getCause();
    }

    /** Migrates {@code src} to a fresh destination and expects success: nothing was lost. */
    private static void migratesAgain(TrackedMachine src) throws Exception {
        Connection[] pair = Channels.inProcessPair();
        CompletableFuture<Incoming.Result> dst = receiveAsync(TestSupport.incoming(RAM), pair[1]);
        MigrationStats again = new Migration(src, pair[0], TestSupport.params()).run(s -> {
        });
        assertEquals(MigrationStatus.COMPLETED, again.status(), again.error());
        Incoming.Result r = dst.get(20, TimeUnit.SECONDS);
        try (Machine m = r.machine()) {
            assertTrue(r.verified(), "the RAM digests matched");
            assertTrue(m.vcpuFailure().isEmpty());
        }
    }

    @Test
    void connectionCutAtRandomPoints() throws Exception {
        Random random = new Random(20240607);
        long[] cuts = {0, 3, 9, 60, 300, 5000, random.nextLong(WORKING_SET), random.nextLong(WORKING_SET),
                random.nextLong(WORKING_SET), random.nextLong(WORKING_SET)};
        try (TrackedMachine src = busyGuest(20, 3)) {
            for (long cut : cuts) {
                Connection[] pair = Channels.inProcessPair();
                CompletableFuture<Incoming.Result> dst = receiveAsync(TestSupport.incoming(RAM), pair[1]);
                TestSupport.CuttingConnection c = new TestSupport.CuttingConnection(pair[0], cut);
                MigrationStats stats = new Migration(src, c, TestSupport.params()).run(s -> {
                });
                assertTrue(c.cut.get(), "the stream is longer than " + cut);
                assertSourceRecovered(src, stats, MigrationStatus.FAILED);
                assertTrue(stats.error().contains("test cut the connection after " + cut + " bytes"),
                        "cut at " + cut + ": " + stats.error());
                Throwable why = destinationFailed(dst);
                if (why instanceof StreamException se) {
                    assertEquals(cut, se.offset(), "the destination read up to the cut: " + se.getMessage());
                }
            }
            migratesAgain(src);
        }
    }

    @Test
    void destinationCrashesAfterSomeBytes() throws Exception {
        Random random = new Random(77);
        try (TrackedMachine src = busyGuest(20, 4)) {
            for (int round = 0; round < 3; round++) {
                long limit = round == 0 ? 100 : 1000 + random.nextLong(WORKING_SET);
                Connection[] pair = Channels.inProcessPair();
                Connection crashing = new CrashingDestination(pair[1], limit);
                CompletableFuture<Incoming.Result> dst = receiveAsync(TestSupport.incoming(RAM), crashing);
                MigrationStats stats = new Migration(src, pair[0], TestSupport.params()).run(s -> {
                });
                assertSourceRecovered(src, stats, MigrationStatus.FAILED);
                assertTrue(destinationFailed(dst).getMessage().contains("destination crashed"));
            }
            migratesAgain(src);
        }
    }

    @Test
    void destinationClosedFromAnotherThread() throws Exception {
        Random random = new Random(5);
        try (TrackedMachine src = busyGuest(20, 5)) {
            for (int round = 0; round < 3; round++) {
                try (Channels.Listener l = Channels.listen(MigrationUri.parse("tcp:127.0.0.1:0"))) {
                    CompletableFuture<Connection> accepted = new CompletableFuture<>();
                    CompletableFuture<Incoming.Result> dst = new CompletableFuture<>();
                    Thread.ofPlatform().daemon().start(() -> {
                        try (Connection c = l.accept()) {
                            accepted.complete(c);
                            dst.complete(TestSupport.incoming(RAM).receive(c));
                        } catch (Throwable e) {
                            dst.completeExceptionally(e);
                        }
                    });
                    long delay = 30 + random.nextInt(150);
                    Thread.ofPlatform().daemon().start(() -> {
                        try {
                            Connection c = accepted.get(10, TimeUnit.SECONDS);
                            Guests.sleep(delay);
                            c.close();
                        } catch (Exception ignored) {
                            // The test fails on the source's status instead.
                        }
                    });
                    // 4 MiB at 8 MiB/s: half a second, so the close lands mid-stream.
                    MigrationStats stats = new Migration(src, Channels.connect(MigrationUri.parse(l.address())),
                            TestSupport.params().withMaxBandwidth(8 * MIB)).run(s -> {
                    });
                    assertSourceRecovered(src, stats, MigrationStatus.FAILED);
                    destinationFailed(dst);
                }
            }
        }
    }

    @Test
    void cancelDuringIterations() throws Exception {
        // A busy guest and a 1 ms downtime limit: it never converges on its own.
        try (TrackedMachine src = busyGuest(200, 6)) {
            Connection[] pair = Channels.inProcessPair();
            CompletableFuture<Incoming.Result> dst = receiveAsync(TestSupport.incoming(RAM), pair[1]);
            Migration mig = new Migration(src, pair[0], TestSupport.params().withDowntimeLimit(Duration.ofMillis(1)));
            AtomicInteger active = new AtomicInteger();
            Thread.ofPlatform().daemon().start(() -> {
                while (mig.stats().status() != MigrationStatus.ACTIVE || mig.stats().dirtySyncCount() < 3) {
                    Guests.sleep(5);
                }
                active.set(1);
                mig.cancel();
            });
            MigrationStats stats = mig.run(s -> {
            });
            assertEquals(1, active.get(), "cancelled while active");
            assertSourceRecovered(src, stats, MigrationStatus.CANCELLED);
            assertEquals("cancelled", stats.error());
            assertEquals(MigrationStatus.CANCELLED, mig.stats().status());
            destinationFailed(dst);
            migratesAgain(src);
        }
    }

    @Test
    void cancelWhileTheDestinationIsUnresponsive() throws Exception {
        // Nobody reads the destination's end: the source waits for READY that never comes.
        try (TrackedMachine src = busyGuest(20, 7)) {
            Connection[] pair = Channels.inProcessPair();
            try {
                Migration mig = new Migration(src, pair[0], TestSupport.params().withTimeout(Duration.ofSeconds(25)));
                Thread.ofPlatform().daemon().start(() -> {
                    Guests.sleep(200);
                    mig.cancel();
                });
                long start = System.nanoTime();
                MigrationStats stats = mig.run(s -> {
                });
                assertTrue(System.nanoTime() - start < 5_000_000_000L,
                        "cancel cuts a stuck destination off at once, not at the timeout");
                assertSourceRecovered(src, stats, MigrationStatus.CANCELLED);
                assertEquals("cancelled", stats.error());
            } finally {
                pair[1].close();
            }
        }
    }

    @Test
    void tinyTimeout() throws Exception {
        try (TrackedMachine src = busyGuest(200, 8)) {
            Connection[] pair = Channels.inProcessPair();
            CompletableFuture<Incoming.Result> dst = receiveAsync(TestSupport.incoming(RAM), pair[1]);
            long start = System.nanoTime();
            MigrationStats stats = new Migration(src, pair[0], TestSupport.params()
                    .withDowntimeLimit(Duration.ofMillis(1)).withTimeout(Duration.ofMillis(400))).run(s -> {
            });
            assertTrue(System.nanoTime() - start < 5_000_000_000L);
            assertSourceRecovered(src, stats, MigrationStatus.FAILED);
            assertTrue(stats.error().contains("timed out"), stats.error());
            assertTrue(stats.totalTimeMs() >= 400, stats.totalTimeMs() + " ms");
            destinationFailed(dst);
        }
    }

    @Test
    void destinationRefusesAGuestTooBig() throws Exception {
        try (TrackedMachine src = busyGuest(20, 9)) {
            Connection[] pair = Channels.inProcessPair();
            CompletableFuture<Incoming.Result> dst = receiveAsync(TestSupport.incoming(8 * MIB), pair[1]);
            MigrationStats stats = new Migration(src, pair[0], TestSupport.params()).run(s -> {
            });
            assertSourceRecovered(src, stats, MigrationStatus.FAILED);
            assertTrue(stats.error().startsWith("the destination refused the machine: "), stats.error());
            assertTrue(stats.error().contains("more than this destination accepts (8388608)"), stats.error());
            Throwable why = destinationFailed(dst);
            assertInstanceOf(StreamException.class, why);
            assertTrue(stats.error().endsWith(why.getMessage()), "the source reports the destination's words");
            assertEquals(0, stats.normal() + stats.duplicate(), "no page was sent");
        }
    }

    /** A destination connection whose stream fails after {@code limit} bytes, closing everything. */
    private static final class CrashingDestination extends TestSupport.ForwardingConnection {
        private final long limit;

        CrashingDestination(Connection inner, long limit) {
            super(inner);
            this.limit = limit;
        }

        @Override
        public String description() {
            return "crashing";
        }

        @Override
        public ReadableByteChannel streamIn() {
            long[] read = {0};
            return new ReadableByteChannel() {
                @Override
                public int read(ByteBuffer dst) throws IOException {
                    if (read[0] >= limit) {
                        inner.close();
                        throw new IOException("destination crashed after " + read[0] + " bytes");
                    }
                    ByteBuffer part = dst.slice(dst.position(), (int) Math.min(dst.remaining(), limit - read[0]));
                    int n = inner.streamIn().read(part);
                    if (n > 0) {
                        dst.position(dst.position() + n);
                        read[0] += n;
                    }
                    return n;
                }

                @Override
                public boolean isOpen() {
                    return inner.streamIn().isOpen();
                }

                @Override
                public void close() throws IOException {
                    inner.close();
                }
            };
        }
    }
}
