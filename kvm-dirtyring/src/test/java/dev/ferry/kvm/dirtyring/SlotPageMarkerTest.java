package dev.ferry.kvm.dirtyring;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.ferry.api.DirtyClient;
import dev.ferry.api.DirtyTrackerException;
import dev.ferry.api.MemorySection;
import dev.ferry.api.RamBlock;
import dev.ferry.kvm.KvmIoctls;
import dev.ferry.kvm.KvmMemslot;
import dev.ferry.kvm.KvmMemslots;
import dev.ferry.memory.AddressSpace;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.IoHandler;
import dev.ferry.memory.MemfdRamBlock;
import dev.ferry.memory.MemoryRegion;
import dev.ferry.memory.MemorySystem;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * (slot, offset) → RAM block page, on a real memory system: RAM of 2048 pages split by a one-page
 * I/O hole at page 300, so the second slot starts at block page 301 (not a multiple of 64) and
 * its entries straddle bitmap words.
 */
class SlotPageMarkerTest {

    static final int PAGE = 4096;
    static final int PAGES = 2048;
    static final int HOLE = 300;
    static final IoHandler IGNORE = new IoHandler() {
        @Override
        public long read(long offset, int size) {
            return 0;
        }

        @Override
        public void write(long offset, long value, int size) {
        }
    };

    private final MemorySystem memory = new MemorySystem();
    private final MemfdRamBlock block = memory.allocateRam("ram", (long) PAGES * PAGE);
    private final MemoryRegion root = memory.container("system", Long.MAX_VALUE);
    private final AddressSpace as = memory.addressSpace("memory", root);
    private final KvmMemslots slots = new KvmMemslots(8);
    private KvmMemslot low;
    private KvmMemslot high;

    @BeforeEach
    void build() {
        root.addSubregion(0, memory.ramRegion("ram", block));
        root.addSubregionOverlap((long) HOLE * PAGE, memory.ioRegion("hole", PAGE, IGNORE), 1);
        for (MemorySection s : as.sections()) {
            if (s.isRam()) {
                slots.add(s, s.address(), s.size(), s.offsetInBlock(), KvmIoctls.KVM_MEM_LOG_DIRTY_PAGES);
            }
        }
        low = slots.get(0).orElseThrow();
        high = slots.get(1).orElseThrow();
        memory.globalDirtyLogStart();
    }

    @AfterEach
    void close() {
        memory.close();
    }

    private List<Long> dirty() {
        DirtyBitmap b = new DirtyBitmap(PAGES);
        block.syncDirtyBitmap(b);
        List<Long> pages = new ArrayList<>();
        for (long p = 0; p < PAGES; p++) {
            if (b.get(p)) {
                pages.add(p);
            }
        }
        return pages;
    }

    @Test
    void entriesLandOnTheirBlockPages() {
        assertEquals(HOLE + 1, high.firstPage());
        SlotPageMarker m = new SlotPageMarker(slots);
        long[] offsets = {0, 1, 2, 62, 63, 64, 65, 1000, high.pages() - 1};
        for (long o : offsets) {
            m.dirty(high.id(), o);
        }
        m.dirty(low.id(), 5);
        m.dirty(low.id(), HOLE - 1);
        m.flush();
        List<Long> expected = new ArrayList<>(List.of(5L, (long) HOLE - 1));
        for (long o : offsets) {
            expected.add(HOLE + 1 + o);
        }
        assertEquals(expected, dirty());
        assertEquals(11, m.entries());
    }

    @Test
    void consecutivePagesAreMarkedAWordAtATime() {
        SlotPageMarker m = new SlotPageMarker(slots);
        // Block pages 320..447: two whole aligned words, out of order within each word.
        for (long p = 447; p >= 384; p--) {
            m.dirty(high.id(), p - high.firstPage());
        }
        for (long p = 320; p < 384; p++) {
            m.dirty(high.id(), p - high.firstPage());
        }
        m.flush();
        assertEquals(128, m.entries());
        assertEquals(2, m.words());
        assertEquals(128, dirty().size());
        // Scattered pages each cost a word of their own.
        m.dirty(low.id(), 0);
        m.dirty(high.id(), 1000);
        m.dirty(low.id(), 1);
        m.flush();
        assertEquals(5, m.words());
        assertEquals(List.of(0L, 1L, HOLE + 1 + 1000L), dirty());
        m.flush();
        assertEquals(5, m.words(), "nothing buffered, nothing marked");
    }

    @Test
    void otherBlocksGetRunsOfPages() {
        List<String> calls = new ArrayList<>();
        RamBlock fake = new RamBlock() {
            @Override
            public String name() {
                return "fake";
            }

            @Override
            public long size() {
                return 1L << 30;
            }

            @Override
            public MemorySegment host() {
                return MemorySegment.NULL;
            }

            @Override
            public void setDirty(long offset, long length) {
                calls.add(offset / PAGE + "+" + length / PAGE);
            }

            @Override
            public long setDirtyBitmap(long firstPage, MemorySegment bitmap, long pages) {
                throw new AssertionError("not used");
            }
        };
        fake.setDirtyWord(128, 0b1011L);
        fake.setDirtyWord(192, -1L);
        fake.setDirtyWord(256, Long.MIN_VALUE | 1L);
        fake.setDirtyWord(320, 0xF0L << 56);
        assertEquals(List.of("128+2", "131+1", "192+64", "256+1", "319+1", "380+4"), calls);
    }

    @Test
    void entriesThatNameNoSlotAreRefused() {
        SlotPageMarker m = new SlotPageMarker(slots);
        assertEquals("kvm-dirtyring: ring entry for address space 1 slot 0 offset 7, but Ferry only maps address "
                + "space 0", assertThrows(DirtyTrackerException.class, () -> m.dirty(1 << 16, 7)).getMessage());
        assertEquals("kvm-dirtyring: ring entry for memory slot 5 (page 7), which the slot table does not have; the "
                + "page cannot be attributed to RAM", assertThrows(DirtyTrackerException.class,
                () -> m.dirty(5, 7)).getMessage());
        assertEquals("kvm-dirtyring: ring entry for page 300 of " + low + ", which has 300 pages",
                assertThrows(DirtyTrackerException.class, () -> m.dirty(low.id(), HOLE)).getMessage());
    }

    @Test
    void aRemovedSlotIsNotUsedFromTheCache() {
        SlotPageMarker m = new SlotPageMarker(slots);
        m.dirty(low.id(), 1);
        slots.remove(low);
        assertThrows(DirtyTrackerException.class, () -> m.dirty(low.id(), 2));
        m.flush();
        assertEquals(List.of(1L), dirty());
        assertEquals(0, block.bitmap(DirtyClient.MIGRATION).count());
    }
}
