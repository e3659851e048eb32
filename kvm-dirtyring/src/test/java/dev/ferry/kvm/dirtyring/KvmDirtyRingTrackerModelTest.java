package dev.ferry.kvm.dirtyring;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.api.DirtyTrackerException;
import dev.ferry.api.MemoryListener;
import dev.ferry.api.MemorySection;
import dev.ferry.kvm.KvmIoctls;
import dev.ferry.kvm.KvmMemslot;
import dev.ferry.kvm.KvmMemslots;
import dev.ferry.memory.AddressSpace;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.MemfdRamBlock;
import dev.ferry.memory.MemoryRegion;
import dev.ferry.memory.MemorySystem;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The whole tracker on a real memory system with {@link SimulatedKernel} in place of KVM, and a
 * stand-in for the accelerator's slot listener (priority 10) that keeps the slot table and calls
 * the tracker's reap hook around slot deletion as KvmAccelerator does.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class KvmDirtyRingTrackerModelTest {

    private static final int PAGE = 4096;
    private static final int PAGES = 2048;

    private final MemorySystem memory = new MemorySystem();
    private final MemfdRamBlock block = memory.allocateRam("ram", (long) PAGES * PAGE);
    private final MemoryRegion root = memory.container("system", Long.MAX_VALUE);
    private final AddressSpace as = memory.addressSpace("memory", root);
    private final KvmMemslots slots = new KvmMemslots(8);
    private final SimulatedKernel kernel = new SimulatedKernel(2, 1024, 576);
    private final List<String> events = new ArrayList<>();
    private final KvmDirtyRingTracker tracker =
            new KvmDirtyRingTracker(slots, kernel, 1024, TimeUnit.HOURS.toNanos(1)); // reaps only when woken

    /** What KvmAccelerator's kvm-memslots listener does with the table, without KVM. */
    private final class SlotListener implements MemoryListener {
        @Override
        public int priority() {
            return 10;
        }

        @Override
        public void regionAdd(MemorySection section) {
            if (section.isRam()) {
                slots.add(section, section.address(), section.size(), section.offsetInBlock(),
                        section.dirtyLogMask() != 0 ? KvmIoctls.KVM_MEM_LOG_DIRTY_PAGES : 0);
            }
        }

        @Override
        public void regionDel(MemorySection section) {
            events.add("slots:regionDel " + section.region());
            slots.lock().lock();
            try {
                Optional<KvmMemslot> s = slots.find(section);
                if (s.isPresent()) {
                    tracker.hook().reap(); // before deletion
                    tracker.hook().reap(); // after deletion, before the id is freed
                    slots.remove(s.get());
                }
            } finally {
                slots.lock().unlock();
            }
        }

        @Override
        public void logStart(MemorySection section, int oldMask, int newMask) {
            slots.find(section).ifPresent(s -> slots.setFlags(s, KvmIoctls.KVM_MEM_LOG_DIRTY_PAGES));
        }
    }

    private void build() {
        as.registerListener(new SlotListener());
        as.registerListener(new MemoryListener() {
            @Override
            public int priority() {
                return KvmDirtyRingTracker.PRIORITY;
            }

            @Override
            public void regionDel(MemorySection section) {
                events.add("tracker-priority:regionDel " + section.region());
            }
        });
        root.addSubregion(0, memory.ramRegion("ram", block));
        as.registerListener(tracker);
        memory.globalDirtyLogStart();
    }

    @AfterEach
    void close() {
        tracker.close();
        memory.close();
        kernel.close();
    }

    private List<Long> dirty() {
        DirtyBitmap b = new DirtyBitmap(PAGES);
        block.syncDirtyBitmap(b);
        List<Long> pages = new ArrayList<>();
        for (long p = b.nextSetBit(0); p >= 0; p = b.nextSetBit(p + 1)) {
            pages.add(p);
        }
        return pages;
    }

    private int slotOf(long page) {
        for (KvmMemslot s : slots.all()) {
            if (s.containsBlockPage(page)) {
                return s.id();
            }
        }
        throw new AssertionError("page " + page + " is in no slot");
    }

    @Test
    void syncKicksTheVcpusAndReportsEveryRingsPages() {
        build();
        assertTrue(tracker.priority() > 10, "regionDel must reach the tracker before kvm-memslots");
        int slot = slotOf(0);
        for (long p : new long[]{3, 64, 65, 2047}) {
            kernel.push(0, slot, p);
        }
        kernel.push(1, slot, 700);
        kernel.push(1, slot, 3); // the same page from another vCPU
        int kicksBefore = kernel.kicks.get();
        memory.globalDirtyLogSync(false);
        assertEquals(kicksBefore + 1, kernel.kicks.get(), "vCPUs kicked out of guest mode before the reap");
        assertEquals(List.of(3L, 64L, 65L, 700L, 2047L), dirty());
        assertEquals(1L, tracker.statistics().get("syncs"));
        assertEquals(6L, tracker.statistics().get("pages-reported"));
        memory.globalDirtyLogSync(true);
        assertEquals(List.of(), dirty());
    }

    @Test
    void aResetMismatchStopsTheMigrationAtTheNextSync() {
        build();
        kernel.push(0, slotOf(0), 1);
        kernel.shortBy = 1;
        DirtyTrackerException e = assertThrows(DirtyTrackerException.class, () -> memory.globalDirtyLogSync(false));
        assertTrue(e.getMessage().startsWith("kvm-dirtyring: harvested 1 dirty ring entries"), e.getMessage());
        kernel.shortBy = 0;
        assertThrows(DirtyTrackerException.class, () -> memory.globalDirtyLogSync(false), "the failure sticks");
    }

    @Test
    void aFullExitWithNothingToHarvestStopsTheVcpuAndTheMigration() {
        build();
        DirtyTrackerException e = assertThrows(DirtyTrackerException.class,
                () -> tracker.onRingFull(kernel.sim(1).ring, 1));
        assertTrue(e.getMessage().contains("vCPU 1 exited with KVM_EXIT_DIRTY_RING_FULL"), e.getMessage());
        DirtyTrackerException sync = assertThrows(DirtyTrackerException.class, () -> memory.globalDirtyLogSync(false));
        assertEquals(e.getMessage(), sync.getMessage());
        assertTrue(tracker.failure().isPresent());
    }

    @Test
    void aFullExitReapsAndTheVcpuGoesOn() {
        build();
        int slot = slotOf(0);
        for (int p = 0; p < 448; p++) {
            kernel.push(0, slot, p);
        }
        assertTrue(kernel.softFull(0));
        tracker.onRingFull(kernel.sim(0).ring, 0);
        assertFalse(kernel.softFull(0));
        assertEquals(448, dirty().size());
        assertEquals(1L, tracker.statistics().get("full-exits"));
    }

    @Test
    void vcpuExitsReapBeforeTheRingFills() throws Exception {
        build();
        int slot = slotOf(0);
        assertEquals(224, tracker.softMark()); // 1024 - 576 reserved = 448 usable, half of it
        assertEquals(336, tracker.hardMark());
        for (int p = 0; p < 223; p++) {
            kernel.push(0, slot, p);
        }
        long reapsBefore = tracker.rings().reaps();
        tracker.onVcpuExit(kernel.sim(0).ring);
        assertEquals(0L, tracker.statistics().get("soft-kicks"), "below the soft mark: nothing to do");
        kernel.push(0, slot, 223);
        tracker.onVcpuExit(kernel.sim(0).ring);
        assertEquals(1L, tracker.statistics().get("soft-kicks"), "half-way: the reaper is woken");
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (tracker.rings().entries() < 224 && System.nanoTime() < deadline) {
            Thread.sleep(1);
        }
        assertTrue(tracker.rings().reaps() > reapsBefore);
        assertEquals(224, tracker.rings().entries(), "the reaper thread harvested the ring");
        memory.globalDirtyLogStop();
        for (int p = 0; p < 336; p++) {
            kernel.push(1, slot, 1000 + p);
        }
        tracker.onVcpuExit(kernel.sim(1).ring);
        assertEquals(1L, tracker.statistics().get("vcpu-reaps"), "three quarters: the vCPU reaps itself");
        assertFalse(kernel.sim(1).ring.pendingAtLeast(1));
    }

    @Test
    void withoutAReaperThreadTheVcpuReapsAtThreeQuarters() {
        build();
        memory.globalDirtyLogStop(); // stops the shared tracker's thread; the one under test has none
        int slot = slotOf(0);
        try (KvmDirtyRingTracker alone = new KvmDirtyRingTracker(slots, kernel, 1024, 0)) {
            alone.logGlobalStart();
            assertTrue(Thread.getAllStackTraces().keySet().stream()
                    .noneMatch(t -> t.getName().equals("kvm-dirty-ring-reaper") && t.isAlive()), "no reaper thread");
            for (int p = 0; p < 335; p++) {
                kernel.push(0, slot, p);
            }
            alone.onVcpuExit(kernel.sim(0).ring);
            assertEquals(0L, alone.statistics().get("soft-kicks"), "no thread to wake");
            assertEquals(0L, alone.statistics().get("vcpu-reaps"));
            assertTrue(kernel.sim(0).ring.pendingAtLeast(335));
            kernel.push(0, slot, 335);
            alone.onVcpuExit(kernel.sim(0).ring);
            assertEquals(1L, alone.statistics().get("vcpu-reaps"), "three quarters: the vCPU reaps itself");
            assertFalse(kernel.sim(0).ring.pendingAtLeast(1));
            assertEquals(336, alone.rings().entries());
            assertTrue(alone.failure().isEmpty());
            alone.logGlobalStop();
        }
    }

    @Test
    void removingALoggingSlotReapsBeforeItGoesAndLosesNoPage() {
        build();
        MemoryRegion extra = memory.ramRegion("ram-high", block);
        root.addSubregion(1L << 30, extra);
        assertEquals(2, slots.size());
        int highSlot = -1;
        for (KvmMemslot s : slots.all()) {
            if (s.gpa() == 1L << 30) {
                highSlot = s.id();
                assertTrue(s.logging());
            }
        }
        kernel.push(0, highSlot, 42);
        kernel.push(1, highSlot, 43);
        int kicks = kernel.kicks.get();
        events.clear();
        root.removeSubregion(extra);
        assertEquals(List.of("tracker-priority:regionDel ram-high", "slots:regionDel ram-high"), events,
                "a listener at the tracker's priority hears regionDel before the slot listener");
        assertEquals(kicks + 1, kernel.kicks.get(), "the tracker flushed the vCPUs before the slot went");
        assertTrue(tracker.statistics().get("slot-reaps") >= 1);
        assertEquals(1, slots.size());
        assertEquals(List.of(42L, 43L), dirty(), "the removed slot's pages were marked in the block");
        assertTrue(tracker.failure().isEmpty());
    }

    @Test
    void logGlobalStopStopsTheReaperAndCloseIsIdempotent() {
        build();
        memory.globalDirtyLogStop();
        assertTrue(Thread.getAllStackTraces().keySet().stream()
                .noneMatch(t -> t.getName().equals("kvm-dirty-ring-reaper") && t.isAlive()));
        tracker.close();
        tracker.close();
        assertThrows(IllegalStateException.class, tracker::logGlobalStart);
    }
}
