package dev.ferry.memory;

import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** DirtyBitmap against java.util.BitSet, on seeded random operations, and under concurrent use. */
class DirtyBitmapTest {

    private static final long SEED = 0xb17_3a9L;
    private static final ValueLayout.OfLong LE = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final int[] SIZES = {0, 1, 2, 63, 64, 65, 127, 128, 129, 1000, 4096, 4097};

    private static void assertSame(BitSet want, DirtyBitmap got, String context) {
        assertEquals(want.cardinality(), got.count(), context + ": count");
        for (int p = 0; p < got.pages(); p++) {
            if (want.get(p) != got.get(p)) {
                throw new AssertionError(context + ": page " + p + " should be " + want.get(p));
            }
        }
        for (int w = 0; w < got.wordCount(); w++) {
            long bits = 0;
            for (int i = 0; i < 64; i++) {
                if (want.get(w * 64 + i)) {
                    bits |= 1L << i;
                }
            }
            assertEquals(bits, got.word(w), context + ": word " + w);
        }
    }

    private static long nextSet(BitSet set, long from, long pages) {
        int p = set.nextSetBit((int) Math.max(0, Math.min(from, Integer.MAX_VALUE)));
        return p < 0 || p >= pages ? -1 : p;
    }

    @Test
    void randomOperationsMatchBitSet() {
        Random rnd = new Random(SEED);
        for (int size : SIZES) {
            for (int round = 0; round < 20; round++) {
                DirtyBitmap bm = new DirtyBitmap(size);
                BitSet ref = new BitSet();
                String context = "seed " + SEED + " size " + size + " round " + round;
                assertEquals(size, bm.pages());
                assertEquals((size + 63) / 64, bm.wordCount());
                for (int op = 0; op < 300; op++) {
                    int p = size == 0 ? 0 : rnd.nextInt(size);
                    int first = size == 0 ? 0 : rnd.nextInt(size + 1);
                    int count = rnd.nextInt(size - first + 1);
                    String c = context + " op " + op;
                    switch (rnd.nextInt(12)) {
                        case 0 -> {
                            if (size > 0) {
                                assertEquals(!ref.get(p), bm.set(p), c);
                                ref.set(p);
                            }
                        }
                        case 1 -> {
                            if (size > 0) {
                                assertEquals(ref.get(p), bm.testAndClear(p), c);
                                ref.clear(p);
                            }
                        }
                        case 2 -> {
                            long before = ref.get(first, first + count).cardinality();
                            assertEquals(count - before, bm.setRange(first, count), c);
                            ref.set(first, first + count);
                        }
                        case 3 -> {
                            long before = ref.get(first, first + count).cardinality();
                            assertEquals(before, bm.clearRange(first, count), c);
                            ref.clear(first, first + count);
                        }
                        case 4 -> assertEquals(ref.get(first, first + count).cardinality(), bm.count(first, count), c);
                        case 5 -> {
                            long from = rnd.nextInt(size + 130) - 65;
                            assertEquals(nextSet(ref, from, size), bm.nextSetBit(from), c + " nextSetBit(" + from + ")");
                        }
                        case 6 -> {
                            if (bm.wordCount() > 0) {
                                int w = rnd.nextInt(bm.wordCount());
                                long bits = rnd.nextLong() & lastWordMask(size, w);
                                int newly = 0;
                                for (int i = 0; i < 64; i++) {
                                    if ((bits & (1L << i)) != 0 && !ref.get(w * 64 + i)) {
                                        newly++;
                                        ref.set(w * 64 + i);
                                    }
                                }
                                assertEquals(newly, bm.orWord(w, bits), c);
                            }
                        }
                        case 7 -> {
                            if (bm.wordCount() > 0) {
                                int w = rnd.nextInt(bm.wordCount());
                                long want = 0;
                                for (int i = 0; i < 64; i++) {
                                    if (ref.get(w * 64 + i)) {
                                        want |= 1L << i;
                                    }
                                }
                                assertEquals(want, bm.takeWord(w), c);
                                ref.clear(w * 64, w * 64 + 64);
                            }
                        }
                        case 8 -> {
                            if (size > 0) {
                                long bits = rnd.nextLong();
                                int room = size - p;
                                if (room < 64) {
                                    bits &= (1L << room) - 1;
                                }
                                int newly = 0;
                                for (int i = 0; i < 64; i++) {
                                    if ((bits & (1L << i)) != 0 && !ref.get(p + i)) {
                                        newly++;
                                        ref.set(p + i);
                                    }
                                }
                                assertEquals(newly, bm.orBits(p, bits), c);
                            }
                        }
                        case 9 -> {
                            if (rnd.nextInt(10) == 0) {
                                if (rnd.nextBoolean()) {
                                    bm.setAll();
                                    ref.set(0, size);
                                } else {
                                    bm.clearAll();
                                    ref.clear();
                                }
                            }
                        }
                        default -> {
                            if (size > 0) {
                                assertEquals(ref.get(p), bm.get(p), c);
                            }
                        }
                    }
                }
                assertSame(ref, bm, context);
                List<Long> walked = new ArrayList<>();
                for (long q = bm.nextSetBit(0); q >= 0; q = bm.nextSetBit(q + 1)) {
                    walked.add(q);
                }
                assertEquals(ref.stream().mapToObj(i -> (long) i).toList(), walked, context);
            }
        }
    }

    private static long lastWordMask(int size, int w) {
        int bits = Math.min(64, size - w * 64);
        return bits == 64 ? -1L : (1L << bits) - 1;
    }

    @Test
    void outOfRangeIsRefused() {
        DirtyBitmap bm = new DirtyBitmap(100);
        assertThrows(IndexOutOfBoundsException.class, () -> bm.set(100));
        assertThrows(IndexOutOfBoundsException.class, () -> bm.set(-1));
        assertThrows(IndexOutOfBoundsException.class, () -> bm.get(100));
        assertThrows(IndexOutOfBoundsException.class, () -> bm.testAndClear(-1));
        assertThrows(IndexOutOfBoundsException.class, () -> bm.setRange(90, 11));
        assertThrows(IndexOutOfBoundsException.class, () -> bm.setRange(-1, 2));
        assertThrows(IndexOutOfBoundsException.class, () -> bm.clearRange(0, 101));
        assertThrows(IndexOutOfBoundsException.class, () -> bm.count(50, -1));
        assertThrows(IndexOutOfBoundsException.class, () -> bm.orBits(40, 1L << 60));
        assertThrows(IllegalArgumentException.class, () -> new DirtyBitmap(-1));
        assertThrows(IllegalArgumentException.class, () -> new DirtyBitmap(64L * Integer.MAX_VALUE + 1));
        assertEquals(0, bm.count(), "failed calls change nothing");
        assertEquals(-1, bm.nextSetBit(100));
        assertEquals(-1, bm.nextSetBit(Long.MAX_VALUE));
    }

    @Test
    void nextSetBitFromANegativePageStartsAtZero() {
        DirtyBitmap bm = new DirtyBitmap(200);
        bm.set(3);
        bm.set(150);
        assertEquals(3, bm.nextSetBit(-1));
        assertEquals(3, bm.nextSetBit(-64));
        assertEquals(3, bm.nextSetBit(Long.MIN_VALUE));
    }

    /** @return the reference for orLittleEndian: pages {@code first + i} for each bit i below count */
    private static int referenceOr(BitSet ref, long first, long[] src, long count) {
        int newly = 0;
        for (int i = 0; i < count; i++) {
            if ((src[i >>> 6] & (1L << i)) != 0 && !ref.get((int) first + i)) {
                ref.set((int) first + i);
                newly++;
            }
        }
        return newly;
    }

    @Test
    void orLittleEndianMatchesReferenceAtAnyAlignment() {
        Random rnd = new Random(SEED + 1);
        try (Arena arena = Arena.ofConfined()) {
            for (int round = 0; round < 2000; round++) {
                int pages = 1 + rnd.nextInt(1200);
                DirtyBitmap bm = new DirtyBitmap(pages);
                BitSet ref = new BitSet();
                for (int k = rnd.nextInt(40); k > 0; k--) {
                    int p = rnd.nextInt(pages);
                    bm.set(p);
                    ref.set(p);
                }
                long first = switch (rnd.nextInt(3)) {
                    case 0 -> 64L * rnd.nextInt((pages + 63) / 64); // aligned
                    default -> rnd.nextInt(pages);                  // mostly unaligned
                };
                first = Math.min(first, pages);
                long count = rnd.nextInt(4) == 0 ? pages - first : rnd.nextInt((int) (pages - first) + 1);
                int words = (int) ((count + 63) / 64);
                long[] src = new long[words + 1]; // one word more than needed: must be ignored
                MemorySegment seg = arena.allocate(8L * src.length);
                for (int w = 0; w < src.length; w++) {
                    src[w] = switch (rnd.nextInt(4)) {
                        case 0 -> 0;
                        case 1 -> -1L;
                        default -> rnd.nextLong() & rnd.nextLong();
                    };
                    seg.set(LE, 8L * w, src[w]);
                }
                String context = "seed " + (SEED + 1) + " round " + round + ": " + pages + " pages, first " + first
                        + ", count " + count;
                int newly = referenceOr(ref, first, src, count);
                MemorySegment exact = seg.asSlice(0, 8L * words);
                assertEquals(newly, bm.orLittleEndian(first, exact, count), context);
                assertSame(ref, bm, context);
            }
        }
    }

    @Test
    void orLittleEndianChecksItsArguments() {
        DirtyBitmap bm = new DirtyBitmap(130);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment two = arena.allocate(16);
            two.fill((byte) -1);
            assertThrows(IllegalArgumentException.class, () -> bm.orLittleEndian(0, two, 129));
            assertThrows(IndexOutOfBoundsException.class, () -> bm.orLittleEndian(3, two, 128));
            assertThrows(IndexOutOfBoundsException.class, () -> bm.orLittleEndian(-1, two, 10));
            assertEquals(0, bm.count());
            assertEquals(128, bm.orLittleEndian(2, two, 128));
            assertEquals(2, bm.nextSetBit(0));
            assertEquals(128, bm.count(2, 128));
            // Big-endian would put page 8 first: check the byte order with one bit.
            MemorySegment one = arena.allocate(8);
            one.set(ValueLayout.JAVA_BYTE, 0, (byte) 1);
            DirtyBitmap small = new DirtyBitmap(64);
            assertEquals(1, small.orLittleEndian(0, one, 64));
            assertEquals(0, small.nextSetBit(0));
            one.set(ValueLayout.JAVA_BYTE, 0, (byte) 0);
            one.set(ValueLayout.JAVA_BYTE, 1, (byte) 1);
            assertEquals(1, small.orLittleEndian(0, one, 64));
            assertEquals(8, small.nextSetBit(1));
        }
    }

    @Test
    void drainIntoMovesEverything() {
        Random rnd = new Random(SEED + 2);
        for (int size : SIZES) {
            DirtyBitmap src = new DirtyBitmap(size);
            DirtyBitmap dest = new DirtyBitmap(size);
            BitSet s = new BitSet();
            BitSet d = new BitSet();
            for (int k = 0; k < size / 3; k++) {
                int p = rnd.nextInt(size);
                src.set(p);
                s.set(p);
                int q = rnd.nextInt(size);
                dest.set(q);
                d.set(q);
            }
            BitSet newly = (BitSet) s.clone();
            newly.andNot(d);
            d.or(s);
            assertEquals(newly.cardinality(), src.drainInto(dest), "size " + size);
            assertEquals(0, src.count());
            assertSame(d, dest, "size " + size);
            assertEquals(0, src.drainInto(dest));
        }
        assertThrows(IllegalArgumentException.class, () -> new DirtyBitmap(64).drainInto(new DirtyBitmap(65)));
    }

    /**
     * Writers mark every page of their share exactly once (pages interleaved between writers, so
     * they contend on every word, plus a range all of them mark) while another thread drains over
     * and over. A mark that a drain loses is never made again, so it shows at the end.
     */
    @Test
    void concurrentWritersLoseNothingToARepeatedDrain() throws Exception {
        int pages = 1 << 17;
        int hot = 4096;
        int writers = 4;
        ExecutorService pool = Executors.newFixedThreadPool(writers + 1);
        try {
            for (int round = 0; round < 10; round++) {
                concurrentRound(pool, SEED + 100L * round, pages, hot, writers);
            }
        } finally {
            pool.shutdownNow();
            assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS));
        }
    }

    private static void concurrentRound(ExecutorService pool, long seed, int pages, int hot, int writers)
            throws Exception {
        DirtyBitmap bm = new DirtyBitmap(pages);
        DirtyBitmap dest = new DirtyBitmap(pages);
        CountDownLatch start = new CountDownLatch(1);
        AtomicBoolean writing = new AtomicBoolean(true);
        List<Future<?>> done = new ArrayList<>();
        for (int t = 0; t < writers; t++) {
            int id = t;
            done.add(pool.submit(() -> {
                Random rnd = new Random(seed + id);
                // This writer's pages come in 64-page words: bit b of word w is page 64w + b,
                // and the writer owns bits b with b % writers == id.
                long mine = 0;
                for (int b = id; b < 64; b += writers) {
                    mine |= 1L << b;
                }
                int[] order = new int[pages / 64];
                for (int w = 0; w < order.length; w++) {
                    order[w] = w;
                }
                for (int w = order.length - 1; w > 0; w--) {
                    int j = rnd.nextInt(w + 1);
                    int x = order[w];
                    order[w] = order[j];
                    order[j] = x;
                }
                start.await();
                for (int w : order) {
                    long page = 64L * w;
                    if (page < hot) {
                        // Everyone marks the hot range, by ranges of pages.
                        bm.setRange(page, 64);
                    } else if (rnd.nextBoolean()) {
                        bm.orBits(page, mine);
                    } else {
                        for (long bits = mine; bits != 0; bits &= bits - 1) {
                            bm.set(page + Long.numberOfTrailingZeros(bits));
                        }
                    }
                }
                return null;
            }));
        }
        // The drainer lets the writers go once it runs, so that it drains while they write.
        Future<long[]> drainer = pool.submit(() -> {
            long added = 0;
            long drains = 0;
            start.countDown();
            do {
                added += bm.drainInto(dest);
                drains++;
            } while (writing.get());
            return new long[] {added, drains};
        });
        for (Future<?> f : done) {
            f.get(30, TimeUnit.SECONDS);
        }
        writing.set(false);
        long[] drained = drainer.get(30, TimeUnit.SECONDS);
        assertEquals(dest.count(), drained[0], "drainInto reports what it added");
        long lost = 0;
        long firstLost = -1;
        for (int p = 0; p < pages; p++) {
            if (!dest.get(p) && !bm.get(p)) {
                lost++;
                firstLost = firstLost < 0 ? p : firstLost;
            }
        }
        assertEquals(0, lost, "seed " + seed + ": pages lost, first " + firstLost);
        // Every page was set, and was either drained or is still here.
        assertEquals(pages, dest.count() + bm.count() - countBoth(dest, bm, pages));
    }

    private static long countBoth(DirtyBitmap x, DirtyBitmap y, int pages) {
        long n = 0;
        for (int p = 0; p < pages; p++) {
            if (x.get(p) && y.get(p)) {
                n++;
            }
        }
        return n;
    }
}
