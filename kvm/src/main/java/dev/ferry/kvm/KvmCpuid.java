package dev.ferry.kvm;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

/**
 * A CPUID table: the entries of a struct kvm_cpuid2, as KVM_GET_SUPPORTED_CPUID reports them and
 * KVM_SET_CPUID2 takes them.
 *
 * @param entries the leaves, in the kernel's order
 */
public record KvmCpuid(List<Entry> entries) {

    /**
     * One struct kvm_cpuid_entry2.
     *
     * @param function the leaf (EAX input)
     * @param index    the sub-leaf (ECX input), meaningful when flags has KVM_CPUID_FLAG_SIGNIFCANT_INDEX
     * @param flags    KVM_CPUID_FLAG_* bits
     */
    public record Entry(int function, int index, int flags, int eax, int ebx, int ecx, int edx) {
    }

    public KvmCpuid {
        entries = List.copyOf(entries);
    }

    private static final long ENTRY_BYTES = KvmStructs.KVM_CPUID_ENTRY2.byteSize();
    private static final long HEADER_BYTES = KvmStructs.KVM_CPUID2.byteSize();

    /** @return a zeroed struct kvm_cpuid2 with room for {@code nent} entries, nent set */
    static MemorySegment allocate(Arena arena, int nent) {
        MemorySegment s = arena.allocate(HEADER_BYTES + nent * ENTRY_BYTES, 8);
        s.set(ValueLayout.JAVA_INT, 0, nent);
        return s;
    }

    /** @return the table held in a struct kvm_cpuid2 */
    static KvmCpuid read(MemorySegment s) {
        int nent = s.get(ValueLayout.JAVA_INT, 0);
        List<Entry> list = new ArrayList<>(nent);
        for (int i = 0; i < nent; i++) {
            long o = HEADER_BYTES + i * ENTRY_BYTES;
            list.add(new Entry(s.get(ValueLayout.JAVA_INT, o), s.get(ValueLayout.JAVA_INT, o + 4),
                    s.get(ValueLayout.JAVA_INT, o + 8), s.get(ValueLayout.JAVA_INT, o + 12),
                    s.get(ValueLayout.JAVA_INT, o + 16), s.get(ValueLayout.JAVA_INT, o + 20),
                    s.get(ValueLayout.JAVA_INT, o + 24)));
        }
        return new KvmCpuid(list);
    }

    /** @return this table as a struct kvm_cpuid2 */
    MemorySegment write(Arena arena) {
        MemorySegment s = allocate(arena, entries.size());
        for (int i = 0; i < entries.size(); i++) {
            Entry e = entries.get(i);
            long o = HEADER_BYTES + i * ENTRY_BYTES;
            int[] v = {e.function(), e.index(), e.flags(), e.eax(), e.ebx(), e.ecx(), e.edx()};
            for (int j = 0; j < v.length; j++) {
                s.set(ValueLayout.JAVA_INT, o + 4L * j, v[j]);
            }
        }
        return s;
    }
}
