package dev.ferry.kvm;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/** A descriptor-table register (GDTR or IDTR): struct kvm_dtable (x86). */
public record KvmDtable(long base, int limit) {

    static KvmDtable read(MemorySegment m, long offset) {
        return new KvmDtable(m.get(ValueLayout.JAVA_LONG_UNALIGNED, offset),
                Short.toUnsignedInt(m.get(ValueLayout.JAVA_SHORT_UNALIGNED, offset + 8)));
    }

    void write(MemorySegment m, long offset) {
        m.set(ValueLayout.JAVA_LONG_UNALIGNED, offset, base);
        m.set(ValueLayout.JAVA_SHORT_UNALIGNED, offset + 8, (short) limit);
        m.asSlice(offset + 10, 6).fill((byte) 0);
    }
}
