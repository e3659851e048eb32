package dev.ferry.vhost;

import dev.ferry.memory.linux.Linux;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicBoolean;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class VhostLogTest {

    private static BitSet taken(VhostLog log, long first, long pages) {
        BitSet b = new BitSet();
        long n = log.take(first, pages, (k, bits) -> {
            assertTrue(bits != 0, "only words with marks reach the sink");
            for (long rest = bits; rest != 0; rest &= rest - 1) {
                b.set((int) (first + 64 * k + Long.numberOfTrailingZeros(rest)));
            }
        });
        assertEquals(b.cardinality(), n, "the count returned is the number of marks taken");
        return b;
    }

    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    void takeReturnsExactlyTheMarksOfTheRangeAndLeavesTheNeighbours(boolean shared) {
        VhostLog log = VhostLog.allocate(8, shared); // 512 pages
        try {
            SplittableRandom rnd = new SplittableRandom(7);
            for (int round = 0; round < 200; round++) {
                BitSet model = new BitSet();
                for (int i = 0; i < 120; i++) {
                    int page = rnd.nextInt(512);
                    int len = 1 + rnd.nextInt(3);
                    long addr = (long) page * VhostLog.LOG_PAGE + rnd.nextInt(4096);
                    long bytes = Math.min((long) len * 4096, 512L * 4096 - addr);
                    log.mark(addr, bytes);
                    model.set((int) (addr / 4096), (int) ((addr + bytes - 1) / 4096) + 1);
                }
                int first = rnd.nextInt(512);
                int pages = 1 + rnd.nextInt(512 - first);
                BitSet expected = model.get(first, first + pages);
                BitSet got = taken(log, first, pages);
                BitSet shiftedExpected = new BitSet();
                expected.stream().forEach(i -> shiftedExpected.set(i + first));
                assertEquals(shiftedExpected, got, "round " + round + " range [" + first + ", +" + pages + ")");
                // What lies outside the range is still there; take it all and compare.
                BitSet rest = taken(log, 0, 512);
                model.clear(first, first + pages);
                assertEquals(model, rest, "round " + round + ": marks outside the range must stay");
            }
        } finally {
            log.free();
        }
    }

    @Test
    void marksBeyondTheLogAreRefused() {
        VhostLog log = VhostLog.allocate(1, false);
        try {
            assertThrows(IndexOutOfBoundsException.class, () -> log.mark(64L * 4096, 1));
            assertThrows(IndexOutOfBoundsException.class, () -> log.mark(63L * 4096, 4097));
            log.mark(63L * 4096, 4096);
            assertTrue(log.marked(63L * 4096));
            assertFalse(log.marked(62L * 4096));
        } finally {
            log.free();
        }
    }

    @Test
    void aSharedLogIsAMemfdAnotherMappingSees() {
        VhostLog log = VhostLog.allocate(4, true);
        try {
            assertTrue(log.shared());
            // A backend in another process maps the same memfd; a second mapping here is the same thing.
            MemorySegment other = Linux.mmap(4096, Linux.PROT_READ | Linux.PROT_WRITE, Linux.MAP_SHARED, log.fd(), 0);
            try {
                other.set(ValueLayout.JAVA_LONG, 8, 1L << 5); // page 64 + 5, set by "the backend"
                assertTrue(log.marked((64 + 5) * 4096L));
                assertEquals(BitSet.valueOf(new long[]{0, 1L << 5}), taken(log, 0, 256));
                assertEquals(0, other.get(ValueLayout.JAVA_LONG, 8), "taking clears the mark for the backend too");
            } finally {
                Linux.munmap(other);
            }
        } finally {
            log.free();
        }
    }

    @Test
    void marksMadeWhileTakingAreNeverLost() throws Exception {
        VhostLog log = VhostLog.allocate(64, false); // 4096 pages
        try {
            int writers = 3;
            List<BitSet> marked = new ArrayList<>();
            AtomicBoolean stop = new AtomicBoolean();
            List<Thread> threads = new ArrayList<>();
            for (int w = 0; w < writers; w++) {
                BitSet mine = new BitSet();
                marked.add(mine);
                SplittableRandom rnd = new SplittableRandom(w);
                threads.add(Thread.ofPlatform().start(() -> {
                    while (!stop.get()) {
                        int page = rnd.nextInt(4096);
                        log.mark(page * 4096L, 4096);
                        mine.set(page);
                    }
                }));
            }
            BitSet got = new BitSet();
            long end = System.nanoTime() + 300_000_000L;
            SplittableRandom rnd = new SplittableRandom(99);
            while (System.nanoTime() < end) {
                int first = rnd.nextInt(4096);
                got.or(taken(log, first, 1 + rnd.nextInt(4096 - first)));
            }
            stop.set(true);
            for (Thread t : threads) {
                t.join();
            }
            got.or(taken(log, 0, 4096));
            BitSet all = new BitSet();
            marked.forEach(all::or);
            assertTrue(all.cardinality() > 100, "the writers marked pages");
            assertEquals(all, got);
        } finally {
            log.free();
        }
    }
}
