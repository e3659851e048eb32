package dev.ferry.kvm;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The guest generator and the register records, without KVM. */
class GuestCodeTest {

    private static final GuestCode.Layout LAYOUT = new GuestCode.Layout(0x1000, 0x2000, 3L << 30);

    @Test
    void pageTablesIdentityMapWith2MiBPagesAndPresetAccessedDirtyBits() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment ram = arena.allocate(1 << 20, 4096);
            GuestCode.load(ram, 0, LAYOUT, new GuestCode.Program(GuestCode.Pattern.SEQUENTIAL, 1, 10, 0x10));
            assertEquals(5 * 4096, LAYOUT.pageTablesBytes(), "PML4, PDPT and 3 page directories");
            assertEquals(0x3000 | 0x23, ram.get(ValueLayout.JAVA_LONG, 0x2000), "PML4[0] → PDPT");
            assertEquals(0L, ram.get(ValueLayout.JAVA_LONG, 0x2008));
            for (int gib = 0; gib < 3; gib++) {
                long pd = 0x4000 + gib * 0x1000L;
                assertEquals(pd | 0x23, ram.get(ValueLayout.JAVA_LONG, 0x3000 + gib * 8L), "PDPT[" + gib + "]");
                for (int e = 0; e < 512; e += 97) {
                    long phys = ((long) gib << 30) + ((long) e << 21);
                    assertEquals(phys | 0xE3, ram.get(ValueLayout.JAVA_LONG, pd + e * 8L));
                }
            }
            assertEquals(0L, ram.get(ValueLayout.JAVA_LONG, 0x3000 + 3 * 8), "nothing mapped past 3 GiB");
            assertEquals((byte) 0x41, ram.get(ValueLayout.JAVA_BYTE, 0x1000), "code starts with mov r12d, imm32");
            assertEquals((byte) 0xF4, ram.get(ValueLayout.JAVA_BYTE, 0x1FFF), "the rest of the code page is hlt");
        }
    }

    @Test
    void programsDisassembleCleanly(@TempDir Path dir) throws Exception {
        for (GuestCode.Pattern p : GuestCode.Pattern.values()) {
            byte[] code = new GuestCode.Program(p, 64, 1000, 0x3f8).assemble();
            assertTrue(code.length > 0 && code.length <= GuestCode.CODE_BYTES);
            if (!Files.isExecutable(Path.of("/usr/bin/objdump"))) {
                continue;
            }
            Path bin = dir.resolve(p + ".bin");
            Files.write(bin, code);
            Process objdump = new ProcessBuilder("/usr/bin/objdump", "-D", "-b", "binary", "-mi386:x86-64",
                    "-Mintel", bin.toString()).redirectErrorStream(true).start();
            String asm = new String(objdump.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            assertTrue(objdump.waitFor(30, TimeUnit.SECONDS));
            assertFalse(asm.contains("(bad)"), asm);
            assertTrue(asm.contains("out    dx,eax"), asm);
            assertTrue(asm.contains("mov    edx,0x3f8"), asm);
            assertTrue(asm.contains(p == GuestCode.Pattern.SEQUENTIAL ? "inc    BYTE PTR [rdi]" : "div"), asm);
        }
    }

    @Test
    void entryRegistersCarryTheSlice() {
        GuestCode.Slice slice = new GuestCode.Slice(0x400000, 0x100000, 42, 0.25, 0.9);
        KvmRegs regs = GuestCode.entryRegs(LAYOUT, slice);
        assertEquals(0x1000, regs.rip());
        assertEquals(0x400000, regs.r8());
        assertEquals(256, regs.r9());
        assertEquals(42, regs.r11());
        assertEquals(64, regs.r13());
        assertEquals((long) (0.9 * (1L << 32)), regs.r14());
        GuestCode.Program program = new GuestCode.Program(GuestCode.Pattern.RANDOM, 64, 1000, 0x3f8);
        assertEquals(0, GuestCode.pagesWritten(regs, LAYOUT.codeGpa() + program.commitOffset()));
        KvmRegs atCommit = new KvmRegs(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7,
                LAYOUT.codeGpa() + program.commitOffset(), 2);
        assertEquals(8, GuestCode.pagesWritten(atCommit, LAYOUT.codeGpa() + program.commitOffset()),
                "stopped between a write and its count: the write is made");
    }

    @Test
    void badLayoutsAndSlicesAreRefused() {
        assertThrows(IllegalArgumentException.class, () -> new GuestCode.Program(GuestCode.Pattern.RANDOM, 0, 1, 1));
        assertThrows(IllegalArgumentException.class, () -> new GuestCode.Program(GuestCode.Pattern.RANDOM, 4097, 1, 1));
        assertThrows(IllegalArgumentException.class, () -> new GuestCode.Program(GuestCode.Pattern.RANDOM, 1, 0, 1));
        assertThrows(IllegalArgumentException.class, () -> new GuestCode.Slice(0x1001, 4096, 1, 1, 1));
        assertThrows(IllegalArgumentException.class, () -> new GuestCode.Slice(0x1000, 4096, 0, 1, 1));
        assertTrue(LAYOUT.overlapsSystem(0, 0x2000));
        assertTrue(LAYOUT.overlapsSystem(0x6000, 0x1000), "the third page directory");
        assertFalse(LAYOUT.overlapsSystem(0x7000, 0x1000));
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment small = arena.allocate(0x3000, 4096);
            assertThrows(IllegalArgumentException.class, () -> GuestCode.load(small, 0, LAYOUT,
                    new GuestCode.Program(GuestCode.Pattern.SEQUENTIAL, 1, 1, 1)), "tables past the end of RAM");
        }
    }

    @Test
    void expectedCounterFollowsLaps() {
        assertEquals(0, GuestCode.expectedCounter(0, 10, 0));
        assertEquals(1, GuestCode.expectedCounter(3, 10, 2));
        assertEquals(0, GuestCode.expectedCounter(3, 10, 3));
        assertEquals(3, GuestCode.expectedCounter(25, 10, 4));
        assertEquals(2, GuestCode.expectedCounter(25, 10, 5));
        assertEquals(0, GuestCode.expectedCounter(256 * 10, 10, 9), "wraps at 256");
    }

    @Test
    void registerRecordsRoundTripThroughKernelBytes() {
        KvmRegs regs = new KvmRegs(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0x1000, 2);
        byte[] bytes = regs.toBytes();
        assertEquals(144, bytes.length);
        assertEquals(0x1000, MemorySegment.ofArray(bytes).get(ValueLayout.JAVA_LONG_UNALIGNED, 128), "rip at 128");
        assertEquals(regs, KvmRegs.fromBytes(bytes));

        KvmSegment seg = new KvmSegment(0, 0xFFFF, 0, 3, true, 0, false, true, false, false, false, false);
        KvmDtable table = new KvmDtable(0, 0xFFFF);
        KvmSregs reset = new KvmSregs(seg, seg, seg, seg, seg, seg, seg, seg, table, table,
                0x60000010, 0, 0, 0, 0, 0, 0xFEE00900L, new long[4]);
        KvmSregs longMode = reset.withLongMode(0x2000);
        assertEquals(0x2000, longMode.cr3());
        assertEquals(0x80000000L | 1, longMode.cr0() & 0x80000001L, "PG and PE");
        assertEquals(0x20, longMode.cr4() & 0x20, "PAE");
        assertEquals(0x500, longMode.efer() & 0x500, "LME and LMA");
        assertTrue(longMode.cs().l() && !longMode.cs().db(), "64-bit code segment");
        byte[] sbytes = longMode.toBytes();
        assertEquals(312, sbytes.length);
        assertEquals(longMode, KvmSregs.fromBytes(sbytes));
        assertArrayEquals(sbytes, KvmSregs.fromBytes(sbytes).toBytes());
    }
}
