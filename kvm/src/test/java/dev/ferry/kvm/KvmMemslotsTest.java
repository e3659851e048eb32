package dev.ferry.kvm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.api.MemorySection;
import dev.ferry.api.RamBlock;

import java.util.List;
import java.util.Optional;

import org.junit.jupiter.api.Test;

/** The memslot table's bookkeeping: id allocation and reuse, lookup, logging generations. */
class KvmMemslotsTest {

    private static final RamBlock RAM = new FakeRamBlock("pc.ram", 64L << 20);
    private static final long MIB = 1L << 20;

    private static MemorySection section(String region, long gpa, long size, long offsetInBlock) {
        return new MemorySection("memory", region, gpa, size, Optional.of(RAM), offsetInBlock, false, 0);
    }

    private static KvmMemslot add(KvmMemslots slots, long gpa, long size) {
        MemorySection s = section("pc.ram", gpa, size, gpa);
        return slots.add(s, gpa, size, gpa, 0);
    }

    @Test
    void idsAreAllocatedLowestFreeFirstAndReused() {
        KvmMemslots slots = new KvmMemslots(4);
        KvmMemslot a = add(slots, 0, MIB);
        KvmMemslot b = add(slots, MIB, MIB);
        KvmMemslot c = add(slots, 2 * MIB, MIB);
        assertEquals(List.of(0, 1, 2), slots.all().stream().map(KvmMemslot::id).toList());
        slots.remove(b);
        assertTrue(b.removed());
        KvmMemslot d = add(slots, 5 * MIB, MIB);
        assertEquals(1, d.id(), "the lowest free id is reused, as kvm_alloc_slot does");
        assertEquals(3, add(slots, 6 * MIB, MIB).id());
        String full = assertThrows(IllegalStateException.class, () -> add(slots, 7 * MIB, MIB)).getMessage();
        assertTrue(full.contains("all 4 KVM memory slots are in use"), full);
        slots.remove(a);
        slots.remove(c);
        assertEquals(0, add(slots, 8 * MIB, MIB).id());
        assertEquals(3, slots.size());
    }

    @Test
    void removingAStaleSlotDoesNotRemoveItsSuccessor() {
        KvmMemslots slots = new KvmMemslots(8);
        KvmMemslot a = add(slots, 0, MIB);
        slots.remove(a);
        KvmMemslot b = add(slots, MIB, MIB);
        assertEquals(a.id(), b.id());
        slots.remove(a); // stale handle: must not touch b
        assertSame(b, slots.get(b.id()).orElseThrow());
        assertFalse(b.removed());
    }

    @Test
    void slotsAreFoundBySectionMappingWhateverTheLogMask() {
        KvmMemslots slots = new KvmMemslots(8);
        MemorySection s = section("pc.ram", 2 * MIB, 4 * MIB, 2 * MIB);
        KvmMemslot slot = slots.add(s, s.address(), s.size(), s.offsetInBlock(), 0);
        assertSame(slot, slots.find(s.withDirtyLogMask(4)).orElseThrow());
        assertTrue(slots.find(section("pc.ram", 2 * MIB, 2 * MIB, 2 * MIB)).isEmpty());
        assertTrue(slots.find(section("other", 2 * MIB, 4 * MIB, 2 * MIB)).isEmpty());
        assertEquals(512, slot.firstPage());
        assertEquals(1024, slot.pages());
        assertTrue(slot.containsBlockPage(512) && slot.containsBlockPage(1535));
        assertFalse(slot.containsBlockPage(511) || slot.containsBlockPage(1536));
    }

    @Test
    void loggingGenerationCountsStarts() {
        KvmMemslots slots = new KvmMemslots(8);
        KvmMemslot slot = add(slots, 0, MIB);
        assertEquals(0, slot.logGeneration());
        slots.setFlags(slot, KvmIoctls.KVM_MEM_LOG_DIRTY_PAGES);
        assertTrue(slot.logging());
        assertEquals(1, slot.logGeneration());
        slots.setFlags(slot, KvmIoctls.KVM_MEM_LOG_DIRTY_PAGES); // no transition
        assertEquals(1, slot.logGeneration());
        slots.setFlags(slot, 0);
        slots.setFlags(slot, KvmIoctls.KVM_MEM_LOG_DIRTY_PAGES);
        assertEquals(2, slot.logGeneration(), "KVM made a new log: cached copies are stale");
        KvmMemslot born = slots.add(section("rom", 8 * MIB, MIB, 8 * MIB), 8 * MIB, MIB, 8 * MIB,
                KvmIoctls.KVM_MEM_LOG_DIRTY_PAGES);
        assertEquals(1, born.logGeneration());
    }

    @Test
    void rejectsUnalignedSlotsAndBadCounts() {
        KvmMemslots slots = new KvmMemslots(8);
        MemorySection s = section("pc.ram", 0, MIB, 0);
        assertThrows(IllegalArgumentException.class, () -> slots.add(s, 0x800, MIB, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> slots.add(s, 0, MIB - 1, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> new KvmMemslots(0));
    }
}
