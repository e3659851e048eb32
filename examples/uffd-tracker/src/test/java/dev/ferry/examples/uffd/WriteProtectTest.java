package dev.ferry.examples.uffd;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLongArray;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Exercises {@link WriteProtect} on a 64 MiB MAP_SHARED memfd, like guest RAM: the first quarter is
 * populated before tracking starts, the rest has never been touched (as with --no-prealloc).
 * Needs Linux 6.7+ and userfaultfd permission; skipped with the reason otherwise.
 */
class WriteProtectTest {

    private static final long SIZE = 64L << 20;
    private static final long PAGE = WriteProtect.pageSize();
    private static final int PAGES = (int) (SIZE / PAGE);
    private static final int POPULATED_PAGES = PAGES / 4;

    /** Keeps the reads in the test from being optimized away. */
    static volatile int readSink;

    private MemorySegment ram;
    private long base;
    private WriteProtect wp;

    @BeforeAll
    static void hostCanTrack() {
        String reason = WriteProtect.unavailableReason();
        if (reason != null) {
            Assumptions.abort(reason);
        }
    }

    @BeforeEach
    void mapAndTrack() {
        ram = WriteProtect.mapSharedMemfd("ferry-wp-test", SIZE);
        base = ram.address();
        for (long page = 0; page < POPULATED_PAGES; page++) {
            ram.set(JAVA_BYTE, page * PAGE, (byte) 1);
        }
        wp = WriteProtect.open();
        wp.register(base, SIZE);
        wp.protect(base, SIZE);
    }

    @AfterEach
    void release() {
        if (wp != null) {
            wp.close();
        }
        if (ram != null) {
            WriteProtect.unmap(ram);
        }
    }

    @Test
    void ioctlNumbersMatchTheKernelHeaders() {
        // Values printed by a C probe compiled against the kernel's uapi headers.
        assertEquals(0xc018aa3fL, WriteProtect.UFFDIO_API);
        assertEquals(0xc020aa00L, WriteProtect.UFFDIO_REGISTER);
        assertEquals(0x8010aa01L, WriteProtect.UFFDIO_UNREGISTER);
        assertEquals(0xc018aa06L, WriteProtect.UFFDIO_WRITEPROTECT);
        assertEquals(0xaa00L, WriteProtect.USERFAULTFD_IOC_NEW);
        assertEquals(0xc0606610L, WriteProtect.PAGEMAP_SCAN);
    }

    @Test
    void reportsExactlyTheWrittenPagesThenNothing() throws InterruptedException {
        SplittableRandom random = new SplittableRandom(42);
        BitSet written = new BitSet(PAGES);
        int[][] perThread = new int[2][];
        for (int t = 0; t < perThread.length; t++) {
            perThread[t] = random.ints(1500, 0, PAGES).toArray();
            for (int page : perThread[t]) {
                written.set(page);
            }
        }
        List<Thread> writers = new ArrayList<>();
        for (int t = 0; t < perThread.length; t++) {
            int[] pages = perThread[t];
            long seed = t;
            writers.add(Thread.ofPlatform().start(() -> {
                SplittableRandom r = new SplittableRandom(seed);
                for (int page : pages) {
                    ram.set(JAVA_BYTE, page * PAGE + r.nextLong(PAGE), (byte) 7);
                }
            }));
        }
        for (Thread writer : writers) {
            writer.join();
        }
        // Reads must not count, neither of populated nor of never-populated pages.
        int sum = 0;
        for (int page = 0; page < PAGES; page += 3) {
            sum += ram.get(JAVA_BYTE, page * PAGE);
        }
        readSink = sum;

        assertEquals(written, collect(wp), "first collect");
        assertEquals(new BitSet(), collect(wp), "second collect");
    }

    @Test
    void writesDuringCollectsAreNeverLost() throws InterruptedException {
        AtomicLongArray written = new AtomicLongArray(PAGES / 64);
        AtomicBoolean stop = new AtomicBoolean();
        List<Thread> writers = new ArrayList<>();
        for (int t = 0; t < 2; t++) {
            long seed = 1000 + t;
            writers.add(Thread.ofPlatform().start(() -> {
                SplittableRandom r = new SplittableRandom(seed);
                while (!stop.get()) {
                    int page = r.nextInt(PAGES);
                    ram.set(JAVA_BYTE, page * PAGE + r.nextLong(PAGE), (byte) 3);
                    // Recorded only after the write: whatever is recorded must be reported.
                    written.getAndUpdate(page >>> 6, bits -> bits | 1L << (page & 63));
                }
            }));
        }
        BitSet reported = new BitSet(PAGES);
        int collects = 0;
        long deadline = System.nanoTime() + 500_000_000L;
        while (System.nanoTime() < deadline) {
            reported.or(collect(wp));
            collects++;
        }
        stop.set(true);
        for (Thread writer : writers) {
            writer.join();
        }
        reported.or(collect(wp));

        BitSet expected = new BitSet(PAGES);
        for (int word = 0; word < written.length(); word++) {
            long bits = written.get(word);
            for (int bit = 0; bit < 64; bit++) {
                if ((bits & 1L << bit) != 0) {
                    expected.set(word * 64 + bit);
                }
            }
        }
        BitSet lost = (BitSet) expected.clone();
        lost.andNot(reported);
        assertTrue(lost.isEmpty(), "written but never reported: " + lost.cardinality() + " pages, e.g. "
                + lost.nextSetBit(0) + " (after " + collects + " collects)");
        // Nothing else writes this memory, so nothing else may be reported either.
        assertEquals(expected, reported);
        assertTrue(expected.cardinality() > 100, "writers barely ran: " + expected.cardinality());
    }

    @Test
    void neverPopulatedPagesAreCaught() {
        int[] pages = {POPULATED_PAGES, POPULATED_PAGES + 1, PAGES / 2, PAGES - 1};
        for (int page : pages) {
            ram.set(JAVA_BYTE, page * PAGE + 5, (byte) 9);
        }
        BitSet expected = new BitSet(PAGES);
        for (int page : pages) {
            expected.set(page);
        }
        assertEquals(expected, collect(wp));

        // And on a memfd that has never had a single page.
        MemorySegment fresh = WriteProtect.mapSharedMemfd("ferry-wp-fresh", 8L << 20);
        try {
            wp.register(fresh.address(), fresh.byteSize());
            wp.protect(fresh.address(), fresh.byteSize());
            fresh.set(JAVA_BYTE, 7 * PAGE, (byte) 1);
            fresh.set(JAVA_BYTE, fresh.byteSize() - 1, (byte) 1);
            List<long[]> runs = new ArrayList<>();
            assertEquals(2, wp.collectWritten(fresh.address(), fresh.byteSize(),
                    (offset, length) -> runs.add(new long[] {offset, length})));
            assertEquals(7 * PAGE, runs.get(0)[0]);
            assertEquals(PAGE, runs.get(0)[1]);
            assertEquals(fresh.byteSize() - PAGE, runs.get(1)[0]);
            wp.unregister(fresh.address(), fresh.byteSize());
        } finally {
            WriteProtect.unmap(fresh);
        }
    }

    @Test
    void kernelWritesThroughGetUserPagesAreSeen() throws IOException {
        // /proc/self/mem writes go through get_user_pages(FOLL_WRITE) on this mapping, as KVM's do.
        int populated = 10;
        int neverPopulated = PAGES - 10;
        try (FileChannel mem = FileChannel.open(Path.of("/proc/self/mem"), StandardOpenOption.WRITE)) {
            mem.write(ByteBuffer.wrap(new byte[] {1, 2, 3}), base + populated * PAGE + 100);
            mem.write(ByteBuffer.wrap(new byte[] {4}), base + neverPopulated * PAGE);
        }
        BitSet expected = new BitSet(PAGES);
        expected.set(populated);
        expected.set(neverPopulated);
        assertEquals(expected, collect(wp));
    }

    @Test
    void protectForgetsEarlierWritesAndRunsAreRelativeToAddress() {
        ram.set(JAVA_BYTE, 3 * PAGE, (byte) 1);
        wp.protect(base, SIZE);
        assertEquals(new BitSet(), collect(wp));

        for (int page = 100; page < 1300; page++) { // one run longer than a few vectors' worth
            ram.set(JAVA_BYTE, page * PAGE, (byte) 1);
        }
        for (int page = 2000; page < 2000 + 2 * 1100; page += 2) { // more runs than one vector holds
            ram.set(JAVA_BYTE, page * PAGE, (byte) 1);
        }
        long sub = base + 50 * PAGE;
        List<long[]> runs = new ArrayList<>();
        long pages = wp.collectWritten(sub, SIZE - 50 * PAGE, (offset, length) -> runs.add(new long[] {offset, length}));
        assertEquals(1200 + 1100, pages);
        assertEquals(50 * PAGE, runs.get(0)[0]);
        assertEquals(1200 * PAGE, runs.get(0)[1]);
        assertEquals(1 + 1100, runs.size());
        long previousEnd = -1;
        for (long[] run : runs) {
            assertTrue(run[0] > previousEnd, "runs ascend and do not touch");
            assertEquals(0, run[0] % PAGE);
            assertEquals(0, run[1] % PAGE);
            previousEnd = run[0] + run[1];
        }
    }

    @Test
    void misuseIsReportedClearly() {
        assertThrows(IllegalArgumentException.class, () -> wp.collectWritten(base + 1, PAGE, (o, l) -> { }));
        assertThrows(IllegalArgumentException.class, () -> wp.protect(base, 0));
        wp.unregister(base, SIZE);
        UffdException scan = assertThrows(UffdException.class, () -> wp.collectWritten(base, SIZE, (o, l) -> { }));
        assertTrue(scan.getMessage().contains("PAGEMAP_SCAN") && scan.getMessage().contains("EPERM"), scan.getMessage());
        UffdException protect = assertThrows(UffdException.class, () -> wp.protect(base, SIZE));
        assertTrue(protect.getMessage().contains("UFFDIO_WRITEPROTECT"), protect.getMessage());
        wp.register(base, SIZE);
        wp.register(base, SIZE); // idempotent
        wp.close();
        wp.close();
        assertThrows(IllegalStateException.class, () -> wp.protect(base, SIZE));
    }

    private BitSet collect(WriteProtect tracker) {
        BitSet pages = new BitSet(PAGES);
        tracker.collectWritten(base, SIZE, (offset, length) -> {
            assertEquals(0, offset % PAGE);
            assertEquals(0, length % PAGE);
            pages.set((int) (offset / PAGE), (int) ((offset + length) / PAGE));
        });
        return pages;
    }
}
