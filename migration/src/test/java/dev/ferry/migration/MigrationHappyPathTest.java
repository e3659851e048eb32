package dev.ferry.migration;

import dev.ferry.machine.Guests;
import dev.ferry.machine.Machine;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.SequentialImage;
import dev.ferry.machine.workload.Workload;
import dev.ferry.migration.bootstrap.TrackedMachine;
import dev.ferry.migration.channel.Channels;
import dev.ferry.migration.channel.Connection;
import dev.ferry.migration.channel.MigrationUri;
import dev.ferry.migration.stream.StreamException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static dev.ferry.migration.TestSupport.MIB;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Whole migrations of a running sequential guest over every transport: the source completes,
 * the destination runs the guest from exactly where the source stopped, and the figures agree.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class MigrationHappyPathTest {

    private static final long RAM = 16 * MIB;
    private static final int VCPUS = 2;

    @TempDir
    Path dir;

    /** Connects a source and a destination; the destination's end may appear only once the source connects. */
    private interface Transport {
        Connection source() throws Exception;

        Connection destination() throws Exception;

        default void close() throws Exception {
        }
    }

    private static TrackedMachine runningSequentialGuest(long seed) {
        TrackedMachine tm = TestSupport.guest(RAM, VCPUS, TestSupport.workload(Pattern.SEQUENTIAL, 20, seed));
        tm.machine().start();
        // Let it sweep part of its slices, so that both values occur in the image.
        Guests.awaitWrites(tm.machine(), 1500);
        return tm;
    }

    @Test
    void inProcessPair() throws Exception {
        Connection[] pair = Channels.inProcessPair();
        migrateOverSocketLike(new Transport() {
            @Override
            public Connection source() {
                return pair[0];
            }

            @Override
            public Connection destination() {
                return pair[1];
            }
        });
    }

    @Test
    void tcpLoopback() throws Exception {
        Channels.Listener listener = Channels.listen(MigrationUri.parse("tcp:127.0.0.1:0"));
        assertFalse(listener.address().endsWith(":0"), "the real port: " + listener.address());
        migrateOverSocketLike(listenerTransport(listener));
    }

    @Test
    void unixSocket() throws Exception {
        Path sock = dir.resolve("mig.sock");
        Channels.Listener listener = Channels.listen(MigrationUri.parse("unix:" + sock));
        assertEquals("unix:" + sock, listener.address());
        migrateOverSocketLike(listenerTransport(listener));
        assertFalse(Files.exists(sock), "closing the listener removes the socket file");
    }

    private static Transport listenerTransport(Channels.Listener listener) {
        return new Transport() {
            @Override
            public Connection source() throws Exception {
                return Channels.connect(MigrationUri.parse(listener.address()));
            }

            @Override
            public Connection destination() throws Exception {
                return listener.accept();
            }

            @Override
            public void close() throws Exception {
                listener.close();
            }
        };
    }

    private void migrateOverSocketLike(Transport transport) throws Exception {
        Incoming incoming = TestSupport.incoming(64 * MIB);
        CompletableFuture<Incoming.Result> received = new CompletableFuture<>();
        Thread.ofPlatform().daemon().name("test-destination").start(() -> {
            try (Connection c = transport.destination()) {
                received.complete(incoming.receive(c));
            } catch (Throwable e) {
                received.completeExceptionally(e);
            }
        });
        List<MigrationStats> progress = new ArrayList<>();
        try (TrackedMachine src = runningSequentialGuest(7)) {
            MigrationStats stats;
            try (Connection c = transport.source()) {
                stats = new Migration(src, c, TestSupport.params()).run(progress::add);
            }
            assertEquals(MigrationStatus.COMPLETED, stats.status(), stats.error());
            Incoming.Result r = received.get(20, TimeUnit.SECONDS);
            try (Machine dst = r.machine()) {
                assertTrue(r.verified(), "the source confirmed the digests");
                checkStats(stats, progress);
                // The verdict byte follows the stream on the same channel.
                assertEquals(stats.transferred() + 1, r.bytes());
                assertEquals(stats.normal() + stats.duplicate(), r.pages());
                assertTrue(r.loadNanos() > 0);
                checkContinuity(src.machine(), dst);
            }
        } finally {
            transport.close();
        }
    }

    @Test
    void aSavedGuestWithOneByteOfPageDataFlippedIsRejectedNamingTheBlock() throws Exception {
        Path file = dir.resolve("guest.mig");
        try (TrackedMachine src = runningSequentialGuest(13)) {
            try (Connection c = Channels.connect(MigrationUri.parse("file:" + file))) {
                MigrationStats stats = new Migration(src, c, TestSupport.params()).run(s -> { });
                assertEquals(MigrationStatus.COMPLETED, stats.status(), stats.error());
            }
        }
        byte[] bytes = Files.readAllBytes(file);
        // A run of 1 KiB of one byte value lies inside a page's data: headers and sections are
        // never that uniform. Flip one bit in its middle, as a bad disk or a bad copy would.
        int at = uniformRun(bytes, 1024) + 512;
        bytes[at] ^= 0x10;
        Path damaged = dir.resolve("damaged.mig");
        Files.write(damaged, bytes);
        try (Channels.Listener l = Channels.listen(MigrationUri.parse("file:" + damaged)); Connection c = l.accept()) {
            StreamException e = assertThrows(StreamException.class, () -> TestSupport.incoming(64 * MIB).receive(c));
            assertTrue(e.getMessage().contains("the saved guest fails its integrity check: RAM block " + Machine.RAM_NAME
                    + " does not match the source's digest"), e.getMessage());
        }
    }

    /** @return the offset of the first run of {@code length} equal bytes, after the header */
    private static int uniformRun(byte[] bytes, int length) {
        int start = 64;
        for (int i = start + 1; i < bytes.length; i++) {
            if (bytes[i] != bytes[start]) {
                start = i;
            } else if (i - start + 1 >= length) {
                return start;
            }
        }
        throw new AssertionError("no page data in the stream");
    }

    @Test
    void fileSaveAndLoad() throws Exception {
        Path file = dir.resolve("guest.mig");
        List<MigrationStats> progress = new ArrayList<>();
        try (TrackedMachine src = runningSequentialGuest(11)) {
            MigrationStats stats;
            try (Connection c = Channels.connect(MigrationUri.parse("file:" + file))) {
                assertTrue(c.returnIn().isEmpty(), "a file has no return path");
                stats = new Migration(src, c, TestSupport.params()).run(progress::add);
            }
            assertEquals(MigrationStatus.COMPLETED, stats.status(), stats.error());
            checkStats(stats, progress);
            assertEquals(stats.transferred(), Files.size(file), "every byte sent is in the file");
            try (Channels.Listener l = Channels.listen(MigrationUri.parse("file:" + file))) {
                assertFalse(l.repeatable());
                Incoming.Result r;
                try (Connection c = l.accept()) {
                    r = TestSupport.incoming(64 * MIB).receive(c);
                }
                try (Machine dst = r.machine()) {
                    assertEquals(Incoming.Verification.BY_SAVED_DIGESTS, r.verification(),
                            "the file carries the source's digests, and the loaded RAM matches them");
                    assertEquals(Files.size(file), r.bytes());
                    assertEquals(stats.normal() + stats.duplicate(), r.pages());
                    checkContinuity(src.machine(), dst);
                }
                assertInstanceOf(java.io.IOException.class, org.junit.jupiter.api.Assertions.assertThrows(
                        java.io.IOException.class, l::accept), "a file is read once");
            }
        }
    }

    @Test
    void idleZeroGuestCompletes() throws Exception {
        // Nothing but zero pages: the first pass is tiny, so no bandwidth is ever measured.
        // Nothing is left to send after it either, which must be enough to switch over.
        try (TrackedMachine src = TestSupport.guest(RAM, 1, TestSupport.workload(Pattern.IDLE, 0, 1))) {
            Connection[] pair = Channels.inProcessPair();
            CompletableFuture<Incoming.Result> received = CompletableFuture.supplyAsync(() -> {
                try (Connection c = pair[1]) {
                    return TestSupport.incoming(RAM).receive(c);
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            });
            long start = System.nanoTime();
            MigrationStats stats = new Migration(src, pair[0],
                    TestSupport.params().withTimeout(java.time.Duration.ofSeconds(10))).run(s -> {
            });
            assertEquals(MigrationStatus.COMPLETED, stats.status(), stats.error());
            assertTrue(System.nanoTime() - start < 5_000_000_000L, "an idle guest migrates at once");
            assertEquals(RAM / 4096, stats.duplicate());
            assertEquals(0, stats.normal());
            try (Machine dst = received.get(10, TimeUnit.SECONDS).machine()) {
                assertTrue(dst.vcpuFailure().isEmpty());
            }
        }
    }

    private static void checkStats(MigrationStats s, List<MigrationStats> progress) {
        long pages = RAM / 4096;
        assertTrue(s.transferred() > 0);
        assertTrue(s.normal() + s.duplicate() >= pages, "the first pass alone sends every page: " + s);
        assertTrue(s.normal() > 0, "the guest wrote pages");
        assertTrue(s.dirtySyncCount() >= 2, "setup sync and the final one: " + s.dirtySyncCount());
        assertEquals(RAM, s.total());
        assertEquals(0, s.remaining());
        assertEquals("", s.error());
        assertTrue(s.downtimeMs() >= 0 && s.downtimeMs() < 10_000);
        assertTrue(s.totalTimeMs() >= s.setupTimeMs() + s.verifyTimeMs() + s.downtimeMs(), "phases fit: " + s);
        assertTrue(s.transferred() >= s.normal() * 4096, "page data alone: " + s);
        assertEquals(0, s.throttlePercent());
        assertEquals(List.of("soft"), s.trackers());
        // However short the migration (these take well under the 1 s sync period), its rates are
        // measured, not left at zero.
        assertTrue(s.pagesPerSecond() > 0 && s.mbps() > 0, "rates of a short migration: " + s);
        assertFalse(progress.isEmpty());
        assertEquals(MigrationStatus.COMPLETED, progress.getLast().status(), "the last report is the end");
        Map<String, Object> q = s.toQemuMap();
        assertEquals("completed", q.get("status"));
        for (String k : List.of("total-time", "setup-time", "downtime", "verify-time", "expected-downtime", "ram", "iterations",
                "cpu-throttle-percentage")) {
            assertTrue(q.containsKey(k), k + " in " + q);
        }
        assertFalse(q.containsKey("error-desc"));
        @SuppressWarnings("unchecked")
        Map<String, Object> ram = (Map<String, Object>) q.get("ram");
        assertEquals(List.of("transferred", "remaining", "total", "duplicate", "normal", "normal-bytes",
                "dirty-sync-count", "dirty-pages-rate", "pages-per-second", "mbps"), List.copyOf(ram.keySet()));
        assertEquals(s.normal() * 4096, ram.get("normal-bytes"));
        assertEquals(s.dirtySyncCount(), ram.get("dirty-sync-count"));
    }

    /**
     * The destination continues the source's guest: right after arrival its image is the
     * source's final image advanced by exactly what the destination's vCPUs wrote since, and
     * after it runs a while it is still consistent and further along.
     */
    private static void checkContinuity(Machine src, Machine dst) {
        Workload w = src.config().workload();
        assertEquals(w, dst.config().workload(), "the destination runs the same workload");
        long before = src.pagesWritten();
        Guests.sleep(30);
        assertEquals(before, src.pagesWritten(), "the source guest stays stopped after a completed migration");
        assertTrue(SequentialImage.check(src.ram().host(), w, VCPUS).isEmpty());
        long[] srcSteps = SequentialImage.steps(src.ram().host(), w, VCPUS);
        assertTrue(srcSteps[0] + srcSteps[1] > 0);

        dst.pause();
        assertEquals(java.util.Optional.empty(), SequentialImage.check(dst.ram().host(), w, VCPUS));
        long[] arrived = SequentialImage.steps(dst.ram().host(), w, VCPUS);
        assertEquals(dst.pagesWritten(), SequentialImage.advance(srcSteps, arrived, w, RAM),
                "the destination starts where the source stopped");

        dst.resume();
        Guests.awaitWrites(dst, 600);
        dst.pause();
        assertEquals(java.util.Optional.empty(), SequentialImage.check(dst.ram().host(), w, VCPUS));
        long[] later = SequentialImage.steps(dst.ram().host(), w, VCPUS);
        long advanced = SequentialImage.advance(srcSteps, later, w, RAM);
        assertTrue(advanced >= 600, "the guest moved on: " + advanced);
        assertEquals(dst.pagesWritten(), advanced);
        assertTrue(dst.vcpuFailure().isEmpty());
    }
}
