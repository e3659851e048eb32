package dev.ferry.kvm.dirtylog;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.api.DirtyClient;
import dev.ferry.api.MemorySection;
import dev.ferry.kvm.KvmIoctls;
import dev.ferry.kvm.KvmMemslot;
import dev.ferry.kvm.KvmMemslots;
import dev.ferry.memory.AddressSpace;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.IoHandler;
import dev.ferry.memory.MemfdRamBlock;
import dev.ferry.memory.MemoryRegion;
import dev.ferry.memory.MemorySystem;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The tracker's bookkeeping against {@link FakeDirtyLog}, a model of KVM's dirty bitmaps, on a real
 * memory system: RAM of 2048 pages split by a one-page I/O hole at page 300, so the second slot
 * starts at block page 301, not a multiple of 64. Runs everywhere; the same tracker drives real
 * KVM in {@link KvmDirtyLogKvmTest}.
 */
class KvmDirtyLogTrackerModelTest {

    private static final int PAGE = 4096;
    private static final int PAGES = 2048;
    private static final int HOLE = 300;

    private final MemorySystem memory = new MemorySystem();
    private final MemfdRamBlock block = memory.allocateRam("ram", (long) PAGES * PAGE);
    private final MemoryRegion root = memory.container("system", Long.MAX_VALUE);
    private final AddressSpace as = memory.addressSpace("memory", root);
    private final KvmMemslots slots = new KvmMemslots(8);
    private FakeDirtyLog kernel;
    private KvmDirtyLogTracker tracker;

    private void build(boolean manualProtect) {
        root.addSubregion(0, memory.ramRegion("ram", block));
        root.addSubregionOverlap((long) HOLE * PAGE, memory.ioRegion("hole", PAGE, new IoHandler() {
            @Override
            public long read(long offset, int size) {
                return 0;
            }

            @Override
            public void write(long offset, long value, int size) {
            }
        }), 1);
        for (MemorySection s : as.sections()) {
            if (s.isRam()) {
                slots.add(s, s.address(), s.size(), s.offsetInBlock(), KvmIoctls.KVM_MEM_LOG_DIRTY_PAGES);
            }
        }
        kernel = new FakeDirtyLog(slots, manualProtect);
        tracker = new KvmDirtyLogTracker(slots, kernel, manualProtect);
        as.registerListener(tracker);
        memory.globalDirtyLogStart();
    }

    @AfterEach
    void close() {
        if (tracker != null) {
            as.unregisterListener(tracker);
            tracker.close();
        }
        memory.close();
    }

    private KvmMemslot slotOf(long page) {
        for (KvmMemslot s : slots.all()) {
            if (s.containsBlockPage(page)) {
                return s;
            }
        }
        throw new AssertionError("page " + page + " is in no slot");
    }

    private List<Long> migrationDirty() {
        List<Long> pages = new ArrayList<>();
        DirtyBitmap b = block.bitmap(DirtyClient.MIGRATION);
        for (long p = b.nextSetBit(0); p >= 0; p = b.nextSetBit(p + 1)) {
            pages.add(p);
        }
        return pages;
    }

    @Test
    void foldPutsEachBitOnItsBlockPage() {
        build(false);
        assertEquals(2, slots.size());
        KvmMemslot high = slotOf(HOLE + 1);
        assertEquals(HOLE + 1, high.firstPage());
        long[] slotPages = {0, 1, 63, 64, 65, 127, 128, 1000, high.pages() - 1};
        for (long p : slotPages) {
            kernel.guestWrite(high, p);
        }
        kernel.guestWrite(slotOf(5), 5);
        memory.globalDirtyLogSync(false);
        List<Long> expected = new ArrayList<>(List.of(5L));
        for (long p : slotPages) {
            expected.add(HOLE + 1 + p);
        }
        assertEquals(expected, migrationDirty());
        assertEquals(2L, tracker.statistics().get("syncs"));
        assertEquals((long) expected.size(), tracker.statistics().get("pages-reported"));
        // Without manual protect the fetch cleared the log: the next sync reports nothing new.
        block.bitmap(DirtyClient.MIGRATION).clearAll();
        memory.globalDirtyLogSync(false);
        assertEquals(List.of(), migrationDirty());
    }

    @Test
    void manualProtectClearsOnlyWhatWasFetchedAndAskedFor() {
        build(true);
        KvmMemslot high = slotOf(HOLE + 1);
        memory.globalDirtyLogSync(false); // INITIALLY_SET: everything dirty
        assertEquals(PAGES - 1, migrationDirty().size());
        block.bitmap(DirtyClient.MIGRATION).clearAll();

        // The migration is about to send block pages [320, 330): slot pages 19..28, widened to 0..63.
        as.logClear(block, 320L * PAGE, 10L * PAGE);
        assertEquals(1, kernel.clears);
        kernel.guestWrite(high, 20); // written after the clear: must come back
        memory.globalDirtyLogSync(false);
        List<Long> dirty = migrationDirty();
        assertTrue(dirty.contains(HOLE + 1 + 20L), "re-dirtied page reported");
        assertTrue(dirty.contains(319L) && dirty.contains(330L), "pages next to the range were not cleared");
        for (long p = 322; p < 330; p++) {
            assertTrue(!dirty.contains(p) || p == HOLE + 1 + 20, "page " + p + " was cleared");
        }

        // Clearing the same range again before a fetch clears nothing more (QEMU's reasoning).
        long before = kernel.clears;
        as.logClear(block, 320L * PAGE, 10L * PAGE);
        assertEquals(before + 1, kernel.clears, "page 321 was fetched again, so it is cleared");
        as.logClear(block, 320L * PAGE, 10L * PAGE);
        assertEquals(before + 1, kernel.clears, "nothing fetched is left in the range: no ioctl");
        assertTrue(tracker.statistics().get("clears-skipped") >= 1);
    }

    @Test
    void staleSlotsAndRestartedLogsAreNeverCleared() {
        build(true);
        memory.globalDirtyLogSync(false);
        KvmMemslot low = slotOf(0);
        // Logging restarts: KVM made a new log, the fetched copy is stale and must not be used.
        slots.setFlags(low, 0);
        slots.setFlags(low, KvmIoctls.KVM_MEM_LOG_DIRTY_PAGES);
        long clears = kernel.clears;
        as.logClear(block, 0, 64L * PAGE);
        assertEquals(clears, kernel.clears);
        // The slot goes away: the tracker forgets it.
        assertEquals(2, tracker.cachedSlots());
        slots.remove(low);
        tracker.regionDel(low.section());
        assertEquals(1, tracker.cachedSlots());
        as.logClear(block, 0, 64L * PAGE);
        assertEquals(clears, kernel.clears);
    }

    /**
     * A migration in miniature, with the tracker and the model kernel in the loop: guest writes,
     * syncs, and per-chunk clear-then-send, interleaved at random. Every page must leave the source
     * with its last content, i.e. no write is ever lost between the kernel's log, the tracker's
     * copy and the RAM block.
     */
    @ParameterizedTest
    @ValueSource(booleans = {true, false})
    void noWriteIsLostAcrossSyncsAndClears(boolean manualProtect) {
        build(manualProtect);
        Random random = new Random(manualProtect ? 11 : 12);
        int clearShift = 6 + random.nextInt(3);
        long chunkBytes = (long) PAGE << clearShift;
        DirtyBitmap migration = new DirtyBitmap(PAGES);
        DirtyBitmap clearChunks = new DirtyBitmap(((PAGES - 1) >> clearShift) + 1);
        migration.setAll();
        long[] version = new long[PAGES];
        long[] sent = new long[PAGES];
        java.util.Arrays.fill(sent, -1);
        for (int step = 0; step < 200_000; step++) {
            int op = random.nextInt(100);
            if (op < 55) {
                int p = random.nextInt(PAGES);
                if (p != HOLE) {
                    version[p]++;
                    KvmMemslot s = slotOf(p);
                    kernel.guestWrite(s, p - s.firstPage());
                }
            } else if (op < 57) {
                memory.globalDirtyLogSync(false);
                block.syncDirtyBitmap(migration);
                clearChunks.setAll();
            } else {
                send(migration, clearChunks, clearShift, chunkBytes, version, sent, random.nextInt(PAGES));
            }
        }
        // Final stage: guest stopped, one more sync, send everything.
        memory.globalDirtyLogSync(true);
        block.syncDirtyBitmap(migration);
        clearChunks.setAll();
        while (send(migration, clearChunks, clearShift, chunkBytes, version, sent, 0)) {
            // keep sending
        }
        for (int p = 0; p < PAGES; p++) {
            if (p != HOLE) {
                assertEquals(version[p], sent[p], "page " + p + " left with stale content");
            }
        }
        if (manualProtect) {
            assertTrue(kernel.clears > 0);
        }
    }

    /** RamSaver's send step: clear the chunk's log on its first page (QEMU's clear_bmap), then send. */
    private boolean send(DirtyBitmap migration, DirtyBitmap clearChunks, int clearShift, long chunkBytes,
                         long[] version, long[] sent, long from) {
        long p = migration.nextSetBit(from);
        if (p < 0) {
            p = migration.nextSetBit(0);
        }
        if (p < 0) {
            return false;
        }
        long chunk = p >>> clearShift;
        if (clearChunks.testAndClear(chunk)) {
            long start = chunk * chunkBytes;
            as.logClear(block, start, Math.min(chunkBytes, block.size() - start));
        }
        migration.testAndClear(p);
        sent[(int) p] = version[(int) p];
        return true;
    }
}
