package dev.ferry.migration;

import dev.ferry.machine.Guests;
import dev.ferry.machine.Machine;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import dev.ferry.migration.bootstrap.TrackedMachine;
import dev.ferry.migration.channel.Channels;
import dev.ferry.migration.channel.Connection;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

import static dev.ferry.migration.TestSupport.MIB;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The RAM digests catch a page the trackers never reported: the source writes a page behind
 * the trackers' back after it was sent, as a buggy tracker would miss it. The migration must
 * fail, the destination must drop its copy, and the source guest must run on.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class DigestVerificationTest {

    private static final long RAM = 16 * MIB;

    private static CompletableFuture<Incoming.Result> receiveAsync(Connection c) {
        CompletableFuture<Incoming.Result> f = new CompletableFuture<>();
        Thread.ofPlatform().daemon().name("test-destination").start(() -> {
            try (c) {
                f.complete(TestSupport.incoming(RAM).receive(c));
            } catch (Throwable e) {
                f.completeExceptionally(e);
            }
        });
        return f;
    }

    @Test
    void aPageWrittenBehindTheTrackersIsCaught() throws Exception {
        // The guest writes only the upper half; page 0 is never written by it.
        Workload w = TestSupport.workload(Pattern.RANDOM, 10, 12).withWorkingSet(RAM / 2, RAM / 2);
        try (TrackedMachine src = TestSupport.guest(RAM, 1, w)) {
            Machine m = src.machine();
            m.ram().host().asSlice(RAM / 2, RAM / 2).fill((byte) 0x33);
            Connection[] pair = Channels.inProcessPair();
            CompletableFuture<Incoming.Result> dst = receiveAsync(pair[1]);
            AtomicBoolean lost = new AtomicBoolean();
            // 8 MiB at 16 MiB/s: the first pass lasts half a second, in several bursts, and what is
            // left after the first (over 4 MiB) cannot go within the downtime limit.
            MigrationStats stats = new Migration(src, pair[0], TestSupport.params().withMaxBandwidth(16 * MIB)).run(s -> {
                // The first report comes after the first burst, which began at page 0.
                if (s.status() == MigrationStatus.ACTIVE && lost.compareAndSet(false, true)) {
                    m.ram().host().asSlice(0, 4096).fill((byte) 0x5c);
                }
            });
            assertTrue(lost.get(), "the page was written during the migration: " + stats);
            assertEquals(MigrationStatus.FAILED, stats.status(), stats.error());
            assertTrue(stats.error().contains("RAM digest mismatch on block pc.ram"), stats.error());
            assertTrue(stats.error().contains("pages were lost"), stats.error());

            // The destination stopped and discarded its copy.
            ExecutionException e = assertThrows(ExecutionException.class, () -> dst.get(20, TimeUnit.SECONDS));
            assertInstanceOf(IOException.class, e.getCause());
            assertTrue(e.getCause().getMessage().contains("discarded"), e.getCause().getMessage());

            // The source guest runs on, with the page it has.
            assertFalse(m.memory().globalDirtyLog());
            assertEquals(0, m.throttle());
            Guests.awaitWrites(m, 100);
            assertEquals((byte) 0x5c, m.ram().host().get(ValueLayout.JAVA_BYTE, 4095));

            // Nothing was lost: a second migration carries the page and is verified.
            Connection[] again = Channels.inProcessPair();
            CompletableFuture<Incoming.Result> dst2 = receiveAsync(again[1]);
            MigrationStats ok = new Migration(src, again[0], TestSupport.params()).run(s -> {
            });
            assertEquals(MigrationStatus.COMPLETED, ok.status(), ok.error());
            Incoming.Result r = dst2.get(20, TimeUnit.SECONDS);
            try (Machine d = r.machine()) {
                assertTrue(r.verified());
                assertEquals((byte) 0x5c, d.ram().host().get(ValueLayout.JAVA_BYTE, 0));
            }
        }
    }

    @Test
    void aSaveToFileIsNotVerifiedButKeepsTheSourceStopped() throws Exception {
        // Without a return path nobody compares digests: the file is the result, the source
        // guest stays stopped (as QEMU's savevm to a file).
        try (TrackedMachine src = TestSupport.guest(4 * MIB, 1, TestSupport.workload(Pattern.RANDOM, 5, 2))) {
            TestSupport.Sink sink = new TestSupport.Sink();
            MigrationStats s = new Migration(src, new TestSupport.WriteConnection(sink), TestSupport.params()).run(p -> {
            });
            assertEquals(MigrationStatus.COMPLETED, s.status(), s.error());
            long written = src.machine().pagesWritten();
            Guests.sleep(50);
            assertEquals(written, src.machine().pagesWritten());
            assertFalse(sink.isOpen(), "the source closed the file");
        }
    }
}
