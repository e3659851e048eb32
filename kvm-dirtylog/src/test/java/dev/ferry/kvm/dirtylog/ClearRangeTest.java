package dev.ferry.kvm.dirtylog;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.BitSet;
import java.util.Random;

import org.junit.jupiter.api.Test;

/**
 * The KVM_CLEAR_DIRTY_LOG request arithmetic against a bit-by-bit reference of QEMU's
 * kvm_log_clear_one_slot, and the kernel's own validity rules.
 */
class ClearRangeTest {

    private static final ValueLayout.OfLong WORD = ValueLayout.JAVA_LONG_UNALIGNED;

    /** QEMU's arithmetic, literally (sizes in pages). */
    private static long[] reference(long slotPages, long start, long size) {
        long bmapStart = start & -64L;
        long startDelta = start - bmapStart;
        long bmapNpages = (size + startDelta + 63) / 64 * 64;
        long end = slotPages;
        if (bmapNpages > end - bmapStart) {
            bmapNpages = end - bmapStart;
        }
        return new long[]{bmapStart, bmapNpages, startDelta};
    }

    /** The kernel's check in kvm_clear_dirty_log_protect. */
    private static boolean kernelAccepts(long slotPages, long firstPage, long numPages) {
        return firstPage % 64 == 0 && firstPage <= slotPages && numPages <= slotPages - firstPage
                && (numPages >= slotPages - firstPage || numPages % 64 == 0);
    }

    @Test
    void examples() {
        ClearRange aligned = ClearRange.of(1024, 128, 256);
        assertEquals(new ClearRange(128, 256, 0, 256), aligned);
        assertTrue(aligned.exact());
        // Unaligned start and end: widened both ways.
        assertEquals(new ClearRange(64, 128, 36, 60), ClearRange.of(1024, 100, 60));
        // Widened past the slot's end: capped there (a slot of 1000 pages).
        assertEquals(new ClearRange(960, 40, 10, 30), ClearRange.of(1000, 970, 30));
        assertFalse(ClearRange.of(1000, 970, 30).exact());
        // Up to the end of an odd-sized slot: exact even though 40 is not a multiple of 64.
        assertTrue(ClearRange.of(1000, 960, 40).exact());
        assertThrows(IllegalArgumentException.class, () -> ClearRange.of(1000, 990, 20));
        assertThrows(IllegalArgumentException.class, () -> ClearRange.of(1000, -1, 2));
        assertThrows(IllegalArgumentException.class, () -> ClearRange.of(1000, 0, 0));
    }

    @Test
    void requestsMatchQemuAndTheKernelAcceptsThem() {
        Random random = new Random(42);
        for (int i = 0; i < 20_000; i++) {
            long slotPages = 1 + random.nextInt(5000);
            long start = random.nextLong(slotPages);
            long size = 1 + random.nextLong(slotPages - start);
            ClearRange r = ClearRange.of(slotPages, start, size);
            long[] q = reference(slotPages, start, size);
            assertEquals(q[0], r.firstPage());
            assertEquals(q[1], r.numPages());
            assertEquals(q[2], r.startDelta());
            assertEquals(size, r.pages());
            assertTrue(kernelAccepts(slotPages, r.firstPage(), r.numPages()), r.toString());
            assertTrue(r.firstPage() <= start && r.firstPage() + r.numPages() >= start + size, "covers the range");
        }
    }

    @Test
    void maskHoldsOnlyFetchedBitsInsideTheRangeAndClearingForgetsThem() {
        Random random = new Random(7);
        try (Arena arena = Arena.ofConfined()) {
            for (int i = 0; i < 5_000; i++) {
                int slotPages = 1 + random.nextInt(2000);
                int words = (slotPages + 63) / 64;
                MemorySegment fetched = arena.allocate(words * 8L, 8);
                BitSet ref = new BitSet();
                for (int p = 0; p < slotPages; p++) {
                    if (random.nextInt(3) == 0) {
                        ref.set(p);
                        long at = (p >>> 6) * 8L;
                        fetched.set(WORD, at, fetched.get(WORD, at) | 1L << p);
                    }
                }
                int start = random.nextInt(slotPages);
                int size = 1 + random.nextInt(slotPages - start);
                ClearRange r = ClearRange.of(slotPages, start, size);
                MemorySegment out = arena.allocate(r.words() * 8L, 8);
                out.fill((byte) 0x5A); // garbage the mask must overwrite
                long n = r.buildMask(fetched, out);

                BitSet expected = ref.get(start, start + size); // bits start.. shifted to 0
                BitSet mask = BitSet.valueOf(out.toArray(ValueLayout.JAVA_LONG));
                BitSet expectedMask = new BitSet();
                expected.stream().forEach(b -> expectedMask.set(b + r.startDelta()));
                assertEquals(expectedMask, mask, r.toString());
                assertEquals(expected.cardinality(), n);

                r.clearFetched(fetched);
                ref.clear(start, start + size);
                assertEquals(ref, BitSet.valueOf(fetched.toArray(ValueLayout.JAVA_LONG)), "bits outside the range survive");
            }
        }
    }
}
