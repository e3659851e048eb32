package dev.ferry.memory;

import dev.ferry.api.DirtyClient;
import dev.ferry.memory.linux.LinuxException;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** RAM blocks: allocation, host memory, and dirty marking per logging client. */
class MemfdRamBlockTest {

    private static final int MIG = DirtyClient.MIGRATION.bit();
    private static final int VGA = DirtyClient.VGA.bit();
    private static final int CODE = DirtyClient.CODE.bit();
    private static final ValueLayout.OfLong LE = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private static long count(MemfdRamBlock block, DirtyClient client) {
        return block.bitmap(client).count();
    }

    @Test
    void allocatesZeroedSharedMemory() {
        MemfdRamBlock block = MemfdRamBlock.allocate("t0", 64 << 10);
        try {
            assertEquals("t0", block.name());
            assertEquals(64 << 10, block.size());
            assertEquals(4096, block.pageSize());
            assertEquals(16, block.pages());
            assertTrue(block.fd().orElseThrow() >= 0);
            MemorySegment host = block.host();
            assertEquals(block.size(), host.byteSize());
            for (long off = 0; off < host.byteSize(); off += 8) {
                if (host.get(ValueLayout.JAVA_LONG, off) != 0) {
                    throw new AssertionError("fresh block not zeroed at " + off);
                }
            }
            host.set(ValueLayout.JAVA_LONG, 0, 0x0123456789abcdefL);
            host.set(ValueLayout.JAVA_LONG, block.size() - 8, -2L);
            assertEquals(0x0123456789abcdefL, block.host().get(ValueLayout.JAVA_LONG, 0));
            assertEquals(-2L, block.host().get(ValueLayout.JAVA_LONG, block.size() - 8));
            for (DirtyClient c : DirtyClient.values()) {
                assertEquals(16, block.bitmap(c).pages());
            }
            assertEquals(0, block.dirtyLogMask());
            block.close();
            IllegalStateException e = assertThrows(IllegalStateException.class, block::host);
            assertTrue(e.getMessage().contains("t0"), e.getMessage());
        } finally {
            block.close(); // idempotent
        }
    }

    @Test
    void badSizesAreRejectedWithAClearMessage() {
        for (long size : new long[] {0, -4096, 1, 4095, 4097, 64 * 1024 + 512}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> MemfdRamBlock.allocate("bad", size), "size " + size);
            assertTrue(e.getMessage().contains("bad") && e.getMessage().contains(Long.toString(size))
                    && e.getMessage().contains("multiple of 4096"), e.getMessage());
        }
        assertThrows(NullPointerException.class, () -> MemfdRamBlock.allocate(null, 4096));
        // More than any address space holds: the host refuses, and says which call failed.
        LinuxException e = assertThrows(LinuxException.class, () -> MemfdRamBlock.allocate("huge", 1L << 62));
        assertTrue(e.getMessage().contains("failed"), e.getMessage());
        try (MemorySystem ms = new MemorySystem()) {
            ms.allocateRam("dup", 4096);
            IllegalArgumentException dup = assertThrows(IllegalArgumentException.class,
                    () -> ms.allocateRam("dup", 8192));
            assertTrue(dup.getMessage().contains("dup"), dup.getMessage());
            assertEquals(1, ms.ramBlocks().size());
        }
    }

    @Test
    void setDirtyMarksOnlyTheClientsThatLog() {
        try (MemfdRamBlock block = MemfdRamBlock.allocate("t1", 64 << 10)) {
            block.setDirty(0, block.size());
            block.setDirtyPage(3);
            block.setDirtyWord(0, -1L >>> 48);
            for (DirtyClient c : DirtyClient.values()) {
                assertEquals(0, count(block, c), "not logging: nothing marked for " + c);
            }

            block.setDirtyLogMask(MIG);
            block.setDirty(4095, 2); // straddles pages 0 and 1
            block.setDirty(3 * 4096, 4096); // exactly page 3
            block.setDirty(5 * 4096, 0); // nothing
            assertEquals(3, count(block, DirtyClient.MIGRATION));
            assertTrue(block.bitmap(DirtyClient.MIGRATION).get(0));
            assertTrue(block.bitmap(DirtyClient.MIGRATION).get(1));
            assertFalse(block.bitmap(DirtyClient.MIGRATION).get(2));
            assertTrue(block.bitmap(DirtyClient.MIGRATION).get(3));
            assertFalse(block.bitmap(DirtyClient.MIGRATION).get(4));
            assertEquals(0, count(block, DirtyClient.VGA));

            block.setDirtyLogMask(MIG | VGA);
            assertEquals(3, count(block, DirtyClient.MIGRATION), "a client already logging keeps its bits");
            block.setDirtyPage(7);
            assertEquals(1, count(block, DirtyClient.VGA));
            assertEquals(4, count(block, DirtyClient.MIGRATION));
            block.setDirtyWord(8, 0b11); // pages 8 and 9, both new
            assertEquals(6, count(block, DirtyClient.MIGRATION));
            assertEquals(3, count(block, DirtyClient.VGA));

            block.setDirtyLogMask(VGA);
            block.setDirtyLogMask(MIG | VGA);
            assertEquals(0, count(block, DirtyClient.MIGRATION), "a client that starts again starts clear");
            assertEquals(3, count(block, DirtyClient.VGA));
            assertEquals(0, count(block, DirtyClient.CODE));

            assertThrows(IndexOutOfBoundsException.class, () -> block.setDirty(-1, 1));
            assertThrows(IndexOutOfBoundsException.class, () -> block.setDirty(0, -1));
            assertThrows(IndexOutOfBoundsException.class, () -> block.setDirty(block.size() - 1, 2));
            block.setDirtyLogMask(0);
            assertThrows(IndexOutOfBoundsException.class, () -> block.setDirty(block.size(), 1),
                    "the range is checked even when nothing logs");
        }
    }

    @Test
    void setDirtyBitmapFoldsALittleEndianLog() {
        try (MemfdRamBlock block = MemfdRamBlock.allocate("t2", 1 << 20); Arena arena = Arena.ofConfined()) {
            MemorySegment log = arena.allocate(16);
            log.set(LE, 0, 0x8000_0000_0000_0001L);
            log.set(LE, 8, 0b101L);
            assertEquals(0, block.setDirtyBitmap(0, log, 128), "not logging");
            assertEquals(0, count(block, DirtyClient.MIGRATION));

            block.setDirtyLogMask(VGA);
            assertEquals(0, block.setDirtyBitmap(10, log, 128), "only migration pages are counted");
            assertEquals(4, count(block, DirtyClient.VGA));

            block.setDirtyLogMask(VGA | MIG | CODE);
            // Bits 0, 63, 64 and 66 from page 10: pages 10, 73, 74 and 76; a count of 66 stops before 76.
            assertEquals(3, block.setDirtyBitmap(10, log, 66));
            assertEquals(1, block.setDirtyBitmap(10, log, 128));
            assertEquals(0, block.setDirtyBitmap(10, log, 128), "already dirty");
            DirtyBitmap mig = block.bitmap(DirtyClient.MIGRATION);
            assertEquals(10, mig.nextSetBit(0));
            assertEquals(73, mig.nextSetBit(11));
            assertEquals(74, mig.nextSetBit(74));
            assertEquals(76, mig.nextSetBit(75));
            assertEquals(-1, mig.nextSetBit(77));
            assertEquals(4, count(block, DirtyClient.CODE));
            assertEquals(4, count(block, DirtyClient.VGA), "VGA kept what it logged before");
            assertThrows(IndexOutOfBoundsException.class, () -> block.setDirtyBitmap(250, log, 128));
        }
    }

    @Test
    void syncDirtyBitmapMovesTheMigrationBits() {
        try (MemfdRamBlock block = MemfdRamBlock.allocate("t3", 256 << 10)) {
            DirtyBitmap dest = new DirtyBitmap(block.pages());
            block.setDirtyLogMask(MIG | VGA);
            block.setDirty(0, 3 * 4096);
            block.setDirtyPage(40);
            dest.set(1);
            assertEquals(3, block.syncDirtyBitmap(dest));
            assertEquals(4, dest.count());
            assertEquals(0, count(block, DirtyClient.MIGRATION));
            assertEquals(4, count(block, DirtyClient.VGA), "other clients keep their bits");
            assertEquals(0, block.syncDirtyBitmap(dest));
            assertThrows(IllegalArgumentException.class, () -> block.syncDirtyBitmap(new DirtyBitmap(1)));
        }
    }

    @Test
    void memorySystemLoggingDrivesTheBlockMask() {
        MemorySystem ms = new MemorySystem();
        try {
            MemfdRamBlock ram = ms.allocateRam("ram", 64 << 10);
            MemoryRegion root = ms.container("root", 1 << 20);
            MemoryRegion r = ms.ramRegion("r", ram);
            root.addSubregion(0, r);
            ms.addressSpace("memory", root);
            assertEquals(0, ram.dirtyLogMask());
            r.setLog(DirtyClient.CODE, true);
            assertEquals(CODE, ram.dirtyLogMask());
            ms.globalDirtyLogStart();
            assertEquals(CODE | MIG, ram.dirtyLogMask());
            root.removeSubregion(r);
            assertEquals(MIG, ram.dirtyLogMask(), "an unmapped region logs only for migration");
            ms.globalDirtyLogStop();
            assertEquals(0, ram.dirtyLogMask());
            ms.close();
            assertThrows(IllegalStateException.class, ram::host, "closing the system frees its blocks");
        } finally {
            ms.close(); // idempotent
        }
    }
}
