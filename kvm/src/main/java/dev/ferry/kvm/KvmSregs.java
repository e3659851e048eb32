package dev.ferry.kvm;

import static java.lang.foreign.MemoryLayout.PathElement.groupElement;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

/**
 * A vCPU's special registers: struct kvm_sregs (x86; KVM_GET_SREGS / KVM_SET_SREGS). Immutable;
 * {@link #toBytes()} gives the kernel's struct bytes for a migration stream.
 *
 * @param interruptBitmap pending external interrupts, KVM_NR_INTERRUPTS bits (4 words)
 */
public record KvmSregs(KvmSegment cs, KvmSegment ds, KvmSegment es, KvmSegment fs, KvmSegment gs, KvmSegment ss,
                       KvmSegment tr, KvmSegment ldt, KvmDtable gdt, KvmDtable idt,
                       long cr0, long cr2, long cr3, long cr4, long cr8, long efer, long apicBase,
                       long[] interruptBitmap) {

    /** Size of struct kvm_sregs in bytes. */
    public static final int BYTES = (int) KvmStructs.KVM_SREGS.byteSize();

    private static final int BITMAP_WORDS = (KvmStructs.KVM_NR_INTERRUPTS + 63) / 64;
    private static final String[] SEGMENTS = {"cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"};

    public KvmSregs {
        if (interruptBitmap.length != BITMAP_WORDS) {
            throw new IllegalArgumentException("interrupt bitmap must have " + BITMAP_WORDS + " words");
        }
        interruptBitmap = interruptBitmap.clone();
    }

    @Override
    public long[] interruptBitmap() {
        return interruptBitmap.clone();
    }

    private static long offset(String field) {
        return KvmStructs.KVM_SREGS.byteOffset(groupElement(field));
    }

    /** @return the registers held in a struct kvm_sregs */
    public static KvmSregs read(MemorySegment m) {
        KvmSegment[] seg = new KvmSegment[SEGMENTS.length];
        for (int i = 0; i < seg.length; i++) {
            seg[i] = KvmSegment.read(m, offset(SEGMENTS[i]));
        }
        long[] bitmap = new long[BITMAP_WORDS];
        for (int i = 0; i < bitmap.length; i++) {
            bitmap[i] = m.get(ValueLayout.JAVA_LONG_UNALIGNED, offset("interrupt_bitmap") + i * 8L);
        }
        return new KvmSregs(seg[0], seg[1], seg[2], seg[3], seg[4], seg[5], seg[6], seg[7],
                KvmDtable.read(m, offset("gdt")), KvmDtable.read(m, offset("idt")),
                u64(m, "cr0"), u64(m, "cr2"), u64(m, "cr3"), u64(m, "cr4"), u64(m, "cr8"),
                u64(m, "efer"), u64(m, "apic_base"), bitmap);
    }

    private static long u64(MemorySegment m, String field) {
        return m.get(ValueLayout.JAVA_LONG_UNALIGNED, offset(field));
    }

    /** Writes these registers as a struct kvm_sregs at the start of {@code m}. */
    public void write(MemorySegment m) {
        KvmSegment[] seg = {cs, ds, es, fs, gs, ss, tr, ldt};
        for (int i = 0; i < seg.length; i++) {
            seg[i].write(m, offset(SEGMENTS[i]));
        }
        gdt.write(m, offset("gdt"));
        idt.write(m, offset("idt"));
        String[] names = {"cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apic_base"};
        long[] values = {cr0, cr2, cr3, cr4, cr8, efer, apicBase};
        for (int i = 0; i < names.length; i++) {
            m.set(ValueLayout.JAVA_LONG_UNALIGNED, offset(names[i]), values[i]);
        }
        for (int i = 0; i < BITMAP_WORDS; i++) {
            m.set(ValueLayout.JAVA_LONG_UNALIGNED, offset("interrupt_bitmap") + i * 8L, interruptBitmap[i]);
        }
    }

    /** @return the struct kvm_sregs bytes (little-endian, as the kernel lays them out) */
    public byte[] toBytes() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment s = arena.allocate(KvmStructs.KVM_SREGS);
            write(s);
            return s.toArray(ValueLayout.JAVA_BYTE);
        }
    }

    /** @return the registers in bytes made by {@link #toBytes()} */
    public static KvmSregs fromBytes(byte[] bytes) {
        if (bytes.length != BYTES) {
            throw new IllegalArgumentException("struct kvm_sregs is " + BYTES + " bytes, got " + bytes.length);
        }
        return read(MemorySegment.ofArray(bytes));
    }

    /**
     * @return these registers set up for 64-bit long mode with paging from the PML4 at
     *         {@code cr3}: CR0.PE|PG (and the usual MP, ET, NE, WP, AM), CR4.PAE, EFER.LME|LMA,
     *         a 64-bit code segment (selector 8) and flat data segments (selector 16), the way
     *         the kvm selftests set up a vCPU without running firmware
     */
    public KvmSregs withLongMode(long cr3) {
        KvmSegment code = new KvmSegment(0, 0xFFFFFFFF, 8, 11, true, 0, false, true, true, true, false, false);
        KvmSegment data = new KvmSegment(0, 0xFFFFFFFF, 16, 3, true, 0, true, true, false, true, false, false);
        long cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG;
        return new KvmSregs(code, data, data, data, data, data, tr, ldt, gdt, idt,
                cr0, cr2, cr3, cr4 | CR4_PAE, cr8, efer | EFER_LME | EFER_LMA, apicBase, interruptBitmap);
    }

    // arch/x86/include/uapi/asm/processor-flags.h, arch/x86/include/asm/msr-index.h
    static final long CR0_PE = 1L;
    static final long CR0_MP = 1L << 1;
    static final long CR0_ET = 1L << 4;
    static final long CR0_NE = 1L << 5;
    static final long CR0_WP = 1L << 16;
    static final long CR0_AM = 1L << 18;
    static final long CR0_PG = 1L << 31;
    static final long CR4_PAE = 1L << 5;
    static final long EFER_LME = 1L << 8;
    static final long EFER_LMA = 1L << 10;

    @Override
    public boolean equals(Object o) {
        return o instanceof KvmSregs r && cs.equals(r.cs) && ds.equals(r.ds) && es.equals(r.es) && fs.equals(r.fs)
                && gs.equals(r.gs) && ss.equals(r.ss) && tr.equals(r.tr) && ldt.equals(r.ldt)
                && gdt.equals(r.gdt) && idt.equals(r.idt) && cr0 == r.cr0 && cr2 == r.cr2 && cr3 == r.cr3
                && cr4 == r.cr4 && cr8 == r.cr8 && efer == r.efer && apicBase == r.apicBase
                && Arrays.equals(interruptBitmap, r.interruptBitmap);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(toBytes());
    }

    @Override
    public String toString() {
        return String.format("KvmSregs[cr0=%#x cr3=%#x cr4=%#x efer=%#x cs=%s ds=%s]", cr0, cr3, cr4, efer, cs, ds);
    }
}
