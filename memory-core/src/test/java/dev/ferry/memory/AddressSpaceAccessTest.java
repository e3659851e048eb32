package dev.ferry.memory;

import dev.ferry.api.DirtyClient;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Reads and writes through an address space: RAM, dirty marking, I/O handlers and refusals. */
class AddressSpaceAccessTest {

    /** An I/O device that records writes and answers reads with the low byte of the offset plus 0x40. */
    static final class Device implements IoHandler {
        final List<String> calls = new ArrayList<>();

        @Override
        public long read(long offset, int size) {
            calls.add("read " + offset + "/" + size);
            return 0x40 + offset;
        }

        @Override
        public void write(long offset, long value, int size) {
            calls.add("write " + offset + "=" + value + "/" + size);
        }
    }

    private MemorySystem ms;
    private MemfdRamBlock ram0;
    private MemfdRamBlock ram1;
    private MemfdRamBlock rom;
    private MemoryRegion romRegion;
    private final Device device = new Device();
    private AddressSpace as;
    private Arena arena;

    @BeforeEach
    void setUp() {
        ms = new MemorySystem();
        arena = Arena.ofConfined();
        ram0 = ms.allocateRam("ram0", 64 << 10);
        ram1 = ms.allocateRam("ram1", 64 << 10);
        rom = ms.allocateRam("rom", 16 << 10);
        MemoryRegion root = ms.container("root", 1 << 20);
        romRegion = ms.ramRegion("rom", rom);
        romRegion.setReadOnly(true);
        MemoryRegion a = ms.ramRegion("a", ram0);
        ms.transaction(() -> {
            root.addSubregion(0, a);
            root.addSubregion(0x10000, ms.ramRegion("b", ram1)); // right after a
            root.addSubregion(0x20000, ms.ioRegion("dev", 0x1000, device));
            root.addSubregion(0x30000, romRegion);
            root.addSubregion(0x50000, ms.alias("a-hi", a, 0x8000, 0x4000));
        });
        as = ms.addressSpace("memory", root);
    }

    @AfterEach
    void tearDown() {
        arena.close();
        ms.close();
    }

    private MemorySegment bytes(int n, int seed) {
        MemorySegment s = arena.allocate(n);
        for (int i = 0; i < n; i++) {
            s.set(ValueLayout.JAVA_BYTE, i, (byte) (i * 31 + seed));
        }
        return s;
    }

    private static void assertBytes(MemorySegment want, MemorySegment host, long offset) {
        assertEquals(-1, want.mismatch(host.asSlice(offset, want.byteSize())), "at offset " + offset);
    }

    @Test
    void writesAcrossSectionsLandInEachBlockAndMarkTheirPages() {
        ms.globalDirtyLogStart();
        MemorySegment data = bytes(0x2000, 7);
        as.write(0xf800, data); // 0x800 bytes of a's last page, then b's first pages
        assertBytes(data.asSlice(0, 0x800), ram0.host(), 0xf800);
        assertBytes(data.asSlice(0x800), ram1.host(), 0);
        DirtyBitmap d0 = ram0.bitmap(DirtyClient.MIGRATION);
        DirtyBitmap d1 = ram1.bitmap(DirtyClient.MIGRATION);
        assertEquals(1, d0.count());
        assertTrue(d0.get(15));
        assertEquals(2, d1.count());
        assertTrue(d1.get(0) && d1.get(1));
        assertEquals(0, ram0.bitmap(DirtyClient.VGA).count(), "VGA is not logging");

        MemorySegment back = arena.allocate(0x2000);
        as.read(0xf800, back);
        assertEquals(-1, data.mismatch(back));
    }

    @Test
    void writesAreNotMarkedWhileNothingLogs() {
        as.write(0x100, bytes(16, 1));
        for (DirtyClient c : DirtyClient.values()) {
            assertEquals(0, ram0.bitmap(c).count());
        }
        assertBytes(bytes(16, 1), ram0.host(), 0x100);
    }

    @Test
    void writesThroughAnAliasMarkTheTargetBlock() {
        // The alias in setUp shows [0x8000, 0xc000) of a.
        ms.globalDirtyLogStart();
        MemorySegment data = bytes(8, 3);
        as.write(0x50000 + 0x1000, data);
        assertBytes(data, ram0.host(), 0x9000);
        assertTrue(ram0.bitmap(DirtyClient.MIGRATION).get(9));
        assertEquals(1, ram0.bitmap(DirtyClient.MIGRATION).count());
    }

    @Test
    void unmappedAndReadOnlyAddressesAreRefused() {
        MemorySegment data = bytes(16, 5);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> as.write(0x40000, data));
        assertTrue(e.getMessage().contains("unmapped") && e.getMessage().contains("0x40000"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> as.write(0x1ffff8, data));
        assertTrue(e.getMessage().contains("unmapped"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> as.read(0x40000, arena.allocate(4)));
        assertTrue(e.getMessage().contains("unmapped"), e.getMessage());
        // Running off the end of the ROM into the gap after it.
        e = assertThrows(IllegalArgumentException.class, () -> as.read(0x33ff8, arena.allocate(16)));
        assertTrue(e.getMessage().contains("unmapped") && e.getMessage().contains("0x34000"), e.getMessage());

        ms.globalDirtyLogStart();
        e = assertThrows(IllegalArgumentException.class, () -> as.write(0x30010, data));
        assertTrue(e.getMessage().contains("read-only") && e.getMessage().contains("rom"), e.getMessage());
        assertEquals(0, rom.bitmap(DirtyClient.MIGRATION).count());
        for (long off = 0; off < 32; off++) {
            assertEquals(0, rom.host().get(ValueLayout.JAVA_BYTE, 0x10 + off));
        }
        // Reading ROM is fine, and the host may fill it.
        rom.host().set(ValueLayout.JAVA_LONG_UNALIGNED, 0x10, 0x5555L);
        MemorySegment back = arena.allocate(8);
        as.read(0x30010, back);
        assertEquals(0x5555L, back.get(ValueLayout.JAVA_LONG_UNALIGNED, 0));

        romRegion.setReadOnly(false);
        as.write(0x30010, data);
        assertBytes(data, rom.host(), 0x10);
        assertTrue(rom.bitmap(DirtyClient.MIGRATION).get(0));
    }

    @Test
    void ioRegionsGetHandlerCalls() {
        MemorySegment data = arena.allocate(3);
        data.set(ValueLayout.JAVA_BYTE, 0, (byte) 1);
        data.set(ValueLayout.JAVA_BYTE, 1, (byte) 2);
        data.set(ValueLayout.JAVA_BYTE, 2, (byte) -1);
        ms.globalDirtyLogStart();
        as.write(0x20010, data);
        assertEquals(List.of("write 16=1/1", "write 17=2/1", "write 18=-1/1"), device.calls);
        device.calls.clear();
        MemorySegment back = arena.allocate(2);
        as.read(0x20020, back);
        assertEquals(List.of("read 32/1", "read 33/1"), device.calls);
        assertEquals(0x60, back.get(ValueLayout.JAVA_BYTE, 0));
        assertEquals(0x61, back.get(ValueLayout.JAVA_BYTE, 1));
        for (MemfdRamBlock block : ms.ramBlocks()) {
            assertEquals(0, block.bitmap(DirtyClient.MIGRATION).count(), "I/O writes mark no RAM");
        }
        assertFalse(as.flatView().lookup(0x20000).isRam());
    }
}
