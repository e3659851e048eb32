package dev.ferry.kvm;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * One segment register as KVM describes it: struct kvm_segment (x86). The attribute bytes are
 * the descriptor fields, unpacked.
 */
public record KvmSegment(long base, int limit, int selector, int type, boolean present, int dpl, boolean db,
                         boolean s, boolean l, boolean g, boolean avl, boolean unusable) {

    static KvmSegment read(MemorySegment m, long offset) {
        return new KvmSegment(
                m.get(ValueLayout.JAVA_LONG_UNALIGNED, offset),
                m.get(ValueLayout.JAVA_INT_UNALIGNED, offset + 8),
                Short.toUnsignedInt(m.get(ValueLayout.JAVA_SHORT_UNALIGNED, offset + 12)),
                Byte.toUnsignedInt(m.get(ValueLayout.JAVA_BYTE, offset + 14)),
                m.get(ValueLayout.JAVA_BYTE, offset + 15) != 0,
                Byte.toUnsignedInt(m.get(ValueLayout.JAVA_BYTE, offset + 16)),
                m.get(ValueLayout.JAVA_BYTE, offset + 17) != 0,
                m.get(ValueLayout.JAVA_BYTE, offset + 18) != 0,
                m.get(ValueLayout.JAVA_BYTE, offset + 19) != 0,
                m.get(ValueLayout.JAVA_BYTE, offset + 20) != 0,
                m.get(ValueLayout.JAVA_BYTE, offset + 21) != 0,
                m.get(ValueLayout.JAVA_BYTE, offset + 22) != 0);
    }

    void write(MemorySegment m, long offset) {
        m.set(ValueLayout.JAVA_LONG_UNALIGNED, offset, base);
        m.set(ValueLayout.JAVA_INT_UNALIGNED, offset + 8, limit);
        m.set(ValueLayout.JAVA_SHORT_UNALIGNED, offset + 12, (short) selector);
        m.set(ValueLayout.JAVA_BYTE, offset + 14, (byte) type);
        m.set(ValueLayout.JAVA_BYTE, offset + 15, flag(present));
        m.set(ValueLayout.JAVA_BYTE, offset + 16, (byte) dpl);
        m.set(ValueLayout.JAVA_BYTE, offset + 17, flag(db));
        m.set(ValueLayout.JAVA_BYTE, offset + 18, flag(s));
        m.set(ValueLayout.JAVA_BYTE, offset + 19, flag(l));
        m.set(ValueLayout.JAVA_BYTE, offset + 20, flag(g));
        m.set(ValueLayout.JAVA_BYTE, offset + 21, flag(avl));
        m.set(ValueLayout.JAVA_BYTE, offset + 22, flag(unusable));
        m.set(ValueLayout.JAVA_BYTE, offset + 23, (byte) 0);
    }

    private static byte flag(boolean b) {
        return (byte) (b ? 1 : 0);
    }
}
