package dev.ferry.kvm;

import static dev.ferry.kvm.X86Assembler.CC_B;
import static dev.ferry.kvm.X86Assembler.CC_E;
import static dev.ferry.kvm.X86Assembler.CC_NE;
import static dev.ferry.kvm.X86Assembler.R10;
import static dev.ferry.kvm.X86Assembler.R11;
import static dev.ferry.kvm.X86Assembler.R12;
import static dev.ferry.kvm.X86Assembler.R13;
import static dev.ferry.kvm.X86Assembler.R14;
import static dev.ferry.kvm.X86Assembler.R15;
import static dev.ferry.kvm.X86Assembler.R8;
import static dev.ferry.kvm.X86Assembler.R9;
import static dev.ferry.kvm.X86Assembler.RAX;
import static dev.ferry.kvm.X86Assembler.RBX;
import static dev.ferry.kvm.X86Assembler.RCX;
import static dev.ferry.kvm.X86Assembler.RDI;
import static dev.ferry.kvm.X86Assembler.RDX;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Generates the x86-64 guest a KVM vCPU runs: a loop that dirties pages of its slice of the
 * working set, in long mode with identity-mapped 2 MiB pages and no stack, interrupts or
 * firmware.
 *
 * <p>The page-picking arithmetic is that of the software accelerator's PageCursor (xorshift64
 * 13/7/17; hot-cold draws once to choose hot or cold, comparing the top 32 bits with
 * {@code hotProbability * 2^32}, then once more for the page), so both accelerators dirty memory
 * alike from the same seed. SEQUENTIAL is self-checking like QEMU's migration-test guest: each
 * visit increments the page's counter byte at offset 0, in address order, wrapping around at the
 * end of the slice, so any memory image holds v+1 on a prefix of the slice and v on the rest.
 *
 * <p>The whole workload state lives in registers, so KVM_GET_REGS plus guest memory is a
 * complete snapshot:
 * <pre>
 *   r8  slice start (gpa)        r12 page writes left before the next pacing exit
 *   r9  slice pages              r13 hot pages (HOTCOLD)
 *   r10 next page (SEQUENTIAL)   r14 hot threshold, compared with the draw's top 32 bits
 *   r11 xorshift64 state         r15 pages written so far (progress)
 * </pre>
 * After every {@code pagesPerExit} page writes the guest executes {@code out dx, eax} to the
 * pacing port with EAX = the low 32 bits of r15: the host sees a KVM_EXIT_IO there, can read the
 * progress from the data, and paces or throttles the vCPU by waiting before it calls KVM_RUN
 * again.
 */
public final class GuestCode {

    /** How the guest picks the next page of its slice. */
    public enum Pattern {
        /** Every page in address order, wrapping; increments the counter byte at offset 0. */
        SEQUENTIAL,
        /** Uniformly random pages (xorshift64). */
        RANDOM,
        /** Random pages, most of them from the hot part at the start of the slice. */
        HOTCOLD
    }

    /** Guest page size. */
    public static final int PAGE_SIZE = 4096;
    /** The largest page the identity map uses: 2 MiB (1 GiB pages need PDPE1GB, which this host's CPUID lacks). */
    public static final long HUGE_PAGE = 2L << 20;
    private static final long GIB = 1L << 30;
    /** Bytes reserved for the program at {@link Layout#codeGpa()}. */
    public static final int CODE_BYTES = PAGE_SIZE;

    // Page-table entry bits (Intel SDM vol. 3, 4.5): present, writable, accessed, dirty, 2 MiB page.
    // Accessed and dirty are preset so the guest's page walks never write its own page tables.
    private static final long PTE_P = 1, PTE_RW = 2, PTE_A = 0x20, PTE_D = 0x40, PTE_PS = 0x80;

    private GuestCode() {
    }

    /**
     * What every vCPU's guest does.
     *
     * @param pattern      page choice
     * @param writeSize    bytes written at the start of each page touched, 1..4096. SEQUENTIAL
     *                     increments byte 0 and fills the rest with the new counter; RANDOM and
     *                     HOTCOLD fill them with the low byte of the write count
     * @param pagesPerExit page writes between two pacing exits, at least 1
     * @param port         the pacing port, 0..0xffff
     */
    public record Program(Pattern pattern, int writeSize, int pagesPerExit, int port) {

        public Program {
            if (pattern == null) {
                throw new IllegalArgumentException("pattern is required");
            }
            if (writeSize < 1 || writeSize > PAGE_SIZE) {
                throw new IllegalArgumentException("write size must be 1 to 4096 bytes: " + writeSize);
            }
            if (pagesPerExit < 1) {
                throw new IllegalArgumentException("pages per pacing exit must be at least 1: " + pagesPerExit);
            }
            if (port < 0 || port > 0xFFFF) {
                throw new IllegalArgumentException("I/O port must be 0..0xffff: " + port);
            }
        }

        /** @return the program's machine code, position-independent, at most {@link #CODE_BYTES} */
        public byte[] assemble() {
            byte[] code = assembler().assemble();
            if (code.length > CODE_BYTES) {
                throw new AssertionError("guest program of " + code.length + " bytes");
            }
            return code;
        }

        /**
         * @return the offset in the program of the instruction that counts a write in r15 once the
         *         write is made: a vCPU stopped there has made one more write than r15 says
         */
        public int commitOffset() {
            return assembler().offsetOf("commit");
        }

        private X86Assembler assembler() {
            X86Assembler a = new X86Assembler();
            a.movImm32(R12, pagesPerExit);
            a.label("loop");
            switch (pattern) {
                case SEQUENTIAL -> {
                    a.mov(RAX, R10).inc(R10).cmp(R10, R9).jcc(CC_B, "in_slice").xor(R10, R10).label("in_slice");
                }
                case RANDOM -> {
                    xorshift(a);
                    a.mov(RAX, R11).xor(RDX, RDX).div(R9).mov(RAX, RDX);
                }
                case HOTCOLD -> {
                    xorshift(a);
                    a.mov(RBX, R11).shr(RBX, 32);
                    xorshift(a);
                    a.mov(RAX, R11).xor(RDX, RDX);
                    a.cmp(R13, R9).jcc(CC_E, "hot");      // the whole slice is hot
                    a.cmp(RBX, R14).jcc(CC_B, "hot");
                    a.mov(RCX, R9).sub(RCX, R13).div(RCX).mov(RAX, RDX).add(RAX, R13).jmp("picked");
                    a.label("hot").div(R13).mov(RAX, RDX);
                    a.label("picked");
                }
            }
            // rdi = slice start + page * 4096. r15 counts a write only once it is made; a kick can
            // stop the vCPU between the write and the count, at "commit" (pagesWritten adds it).
            a.shl(RAX, 12).mov(RDI, R8).add(RDI, RAX);
            if (pattern == Pattern.SEQUENTIAL) {
                a.incByteAtRdi().label("commit").inc(R15);
                if (writeSize > 1) {
                    fill(a.movAlFromRdi().inc(RDI), writeSize - 1);
                }
            } else {
                // Filled with the low byte of the count this write makes.
                fill(a.movEaxFrom(R15).inc(RAX), writeSize).label("commit").inc(R15);
            }
            a.dec(R12).jcc(CC_NE, "loop");
            a.movImm32(R12, pagesPerExit).movEaxFrom(R15).movImm32(RDX, port).outDxEax().jmp("loop");
            return a;
        }

        /**
         * Stores AL at RDI, {@code bytes} times, one STOSB per iteration. Not REP STOSB: a hypervisor
         * may emulate a string instruction instead of running it (PVM does, byte by byte), and its
         * emulator then pushes a dirty-ring entry per byte without checking the ring's soft limit
         * (virt/kvm/dirty_ring.c WARNs, the ring overflows); a loop exits to KVM at most once per
         * store, on a write-protected page, and runs natively otherwise.
         */
        private static X86Assembler fill(X86Assembler a, int bytes) {
            return a.movImm32(RCX, bytes).label("fill").stosb().dec(RCX).jcc(CC_NE, "fill");
        }

        private static void xorshift(X86Assembler a) {
            a.mov(RAX, R11).shl(RAX, 13).xor(R11, RAX);
            a.mov(RAX, R11).shr(RAX, 7).xor(R11, RAX);
            a.mov(RAX, R11).shl(RAX, 17).xor(R11, RAX);
        }
    }

    /**
     * One vCPU's part of the working set; it becomes the vCPU's starting registers.
     *
     * @param gpa            first byte, page-aligned
     * @param bytes          size, page-aligned, at least one page
     * @param seed           xorshift64 state, not 0 (RANDOM, HOTCOLD). The software accelerator
     *                       mixes the vCPU index in: {@code seed ^ 0x9E3779B97F4A7C15L * (vcpu + 1)}
     * @param hotFraction    HOTCOLD: share of the slice that is hot, in (0, 1]
     * @param hotProbability HOTCOLD: chance a write goes to the hot part, in [0, 1]
     */
    public record Slice(long gpa, long bytes, long seed, double hotFraction, double hotProbability) {

        public Slice {
            if (gpa < 0 || gpa % PAGE_SIZE != 0 || bytes < PAGE_SIZE || bytes % PAGE_SIZE != 0) {
                throw new IllegalArgumentException(String.format(
                        "slice at %#x of %#x bytes: both must be page-aligned, and the slice at least a page", gpa, bytes));
            }
            if (seed == 0) {
                throw new IllegalArgumentException("xorshift64 seed must not be 0");
            }
            if (!(hotFraction > 0 && hotFraction <= 1) || !(hotProbability >= 0 && hotProbability <= 1)) {
                throw new IllegalArgumentException("hot fraction must be in (0, 1] and hot probability in [0, 1]");
            }
        }

        /** @return a slice for the SEQUENTIAL pattern (seed and hot-cold split unused) */
        public static Slice sequential(long gpa, long bytes) {
            return new Slice(gpa, bytes, 1, 1, 1);
        }

        /** @return pages in the slice */
        public long pages() {
            return bytes / PAGE_SIZE;
        }

        long hotPages() {
            return Math.max(1, (long) (pages() * hotFraction));
        }

        long hotThreshold() {
            return (long) (hotProbability * (1L << 32));
        }
    }

    /**
     * Where the program and page tables live, outside every slice.
     *
     * @param codeGpa       the program's page (reserves {@link #CODE_BYTES})
     * @param pageTablesGpa the PML4, followed by the PDPT and one page directory per GiB mapped
     * @param mappedBytes   the identity map covers [0, mappedBytes), rounded up to 2 MiB; at most 512 GiB
     */
    public record Layout(long codeGpa, long pageTablesGpa, long mappedBytes) {

        public Layout {
            if (codeGpa < 0 || codeGpa % PAGE_SIZE != 0 || pageTablesGpa < 0 || pageTablesGpa % PAGE_SIZE != 0) {
                throw new IllegalArgumentException("code and page tables must be page-aligned");
            }
            if (mappedBytes <= 0 || mappedBytes > 512 * GIB) {
                throw new IllegalArgumentException("identity map of " + mappedBytes + " bytes: must be 1 byte to 512 GiB");
            }
        }

        /** @return the number of 1 GiB page directories */
        private long directories() {
            return (mappedBytes + GIB - 1) / GIB;
        }

        /** @return bytes of page tables at {@link #pageTablesGpa()}: PML4, PDPT and the page directories */
        public long pageTablesBytes() {
            return (2 + directories()) * PAGE_SIZE;
        }

        /** @return whether [gpa, gpa + bytes) overlaps the program or the page tables */
        public boolean overlapsSystem(long gpa, long bytes) {
            return overlap(gpa, bytes, codeGpa, CODE_BYTES) || overlap(gpa, bytes, pageTablesGpa, pageTablesBytes());
        }

        private static boolean overlap(long a, long aLen, long b, long bLen) {
            return a < b + bLen && b < a + aLen;
        }
    }

    /**
     * Writes the page tables and the program into guest memory.
     *
     * @param ram    host memory backing guest-physical [ramGpa, ramGpa + ram.byteSize())
     * @param ramGpa the guest-physical address of {@code ram}'s first byte
     */
    public static void load(MemorySegment ram, long ramGpa, Layout layout, Program program) {
        if (overlapsCodeAndTables(layout)) {
            throw new IllegalArgumentException("the program and the page tables overlap: " + layout);
        }
        MemorySegment tables = guestRange(ram, ramGpa, layout.pageTablesGpa(), layout.pageTablesBytes(), "page tables");
        MemorySegment code = guestRange(ram, ramGpa, layout.codeGpa(), CODE_BYTES, "guest code");
        tables.fill((byte) 0);
        long pml4 = layout.pageTablesGpa();
        long pdpt = pml4 + PAGE_SIZE;
        tables.set(ValueLayout.JAVA_LONG, 0, pdpt | PTE_P | PTE_RW | PTE_A);
        long twoMiBPages = (layout.mappedBytes() + HUGE_PAGE - 1) / HUGE_PAGE;
        for (long dir = 0; dir < layout.directories(); dir++) {
            long pd = pdpt + PAGE_SIZE * (1 + dir);
            tables.set(ValueLayout.JAVA_LONG, PAGE_SIZE + dir * 8, pd | PTE_P | PTE_RW | PTE_A);
            for (long e = 0; e < 512 && dir * 512 + e < twoMiBPages; e++) {
                long physical = (dir * 512 + e) * HUGE_PAGE;
                tables.set(ValueLayout.JAVA_LONG, pd - pml4 + e * 8, physical | PTE_P | PTE_RW | PTE_A | PTE_D | PTE_PS);
            }
        }
        byte[] bytes = program.assemble();
        code.fill((byte) 0xF4); // hlt: running off the end stops the vCPU instead of executing garbage
        MemorySegment.copy(MemorySegment.ofArray(bytes), 0, code, 0, bytes.length);
    }

    private static boolean overlapsCodeAndTables(Layout layout) {
        long c = layout.codeGpa();
        long t = layout.pageTablesGpa();
        return c < t + layout.pageTablesBytes() && t < c + CODE_BYTES;
    }

    private static MemorySegment guestRange(MemorySegment ram, long ramGpa, long gpa, long bytes, String what) {
        if (gpa < ramGpa || gpa + bytes > ramGpa + ram.byteSize()) {
            throw new IllegalArgumentException(String.format("%s at %#x..%#x lie outside guest RAM %#x..%#x",
                    what, gpa, gpa + bytes, ramGpa, ramGpa + ram.byteSize()));
        }
        return ram.asSlice(gpa - ramGpa, bytes);
    }

    /** @return the registers a vCPU starts the program with, for {@code slice} */
    public static KvmRegs entryRegs(Layout layout, Slice slice) {
        long rflags = 0x2; // bit 1 is reserved and always set; IF clear: no interrupts
        return new KvmRegs(0, 0, 0, 0, 0, 0, 0, 0,
                slice.gpa(), slice.pages(), 0, slice.seed(), 0, slice.hotPages(), slice.hotThreshold(), 0,
                layout.codeGpa(), rflags);
    }

    /**
     * Prepares a fresh vCPU to run the program loaded by {@link #load}: KVM_SET_CPUID2 (long mode
     * is refused without it), KVM_SET_SREGS for long mode with paging, KVM_SET_REGS.
     *
     * @param cpuid usually {@link Kvm#supportedCpuid()}
     */
    public static void setUp(KvmVcpu vcpu, KvmCpuid cpuid, Layout layout, Slice slice) {
        if (layout.overlapsSystem(slice.gpa(), slice.bytes())) {
            throw new IllegalArgumentException(String.format("slice %#x..%#x overlaps the guest program or page "
                    + "tables (%s): the workload would overwrite them", slice.gpa(), slice.gpa() + slice.bytes(), layout));
        }
        if (layout.codeGpa() + CODE_BYTES > layout.mappedBytes()) {
            throw new IllegalArgumentException(String.format("the program at %#x lies beyond the identity map (%#x bytes)",
                    layout.codeGpa(), layout.mappedBytes()));
        }
        if (slice.gpa() + slice.bytes() > layout.mappedBytes()) {
            throw new IllegalArgumentException(String.format("slice ends at %#x, beyond the identity map (%#x bytes)",
                    slice.gpa() + slice.bytes(), layout.mappedBytes()));
        }
        vcpu.setCpuid2(cpuid);
        vcpu.setSregs(vcpu.getSregs().withLongMode(layout.pageTablesGpa()));
        vcpu.setRegs(entryRegs(layout, slice));
    }

    /**
     * @param commitRip where the program counts a write it has made ({@link Layout#codeGpa()} +
     *                  {@link Program#commitOffset()})
     * @return the pages the guest has written so far: r15, plus the write made but not yet
     *         counted when the vCPU stopped between the two (a kick lands on any instruction
     *         boundary on hardware; an emulator that runs whole blocks hid this)
     */
    public static long pagesWritten(KvmRegs regs, long commitRip) {
        return regs.r15() + (regs.rip() == commitRip ? 1 : 0);
    }

    /**
     * @return what a SEQUENTIAL guest that started on zeroed memory has left in the counter byte of
     *         page {@code page} of its slice after {@code pagesWritten} writes
     */
    public static int expectedCounter(long pagesWritten, long slicePages, long page) {
        long laps = pagesWritten / slicePages;
        long partial = pagesWritten % slicePages;
        return (int) ((laps + (page < partial ? 1 : 0)) & 0xFF);
    }
}
