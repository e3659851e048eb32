package dev.ferry.kvm;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * A vCPU's general-purpose registers, rip and rflags: struct kvm_regs (KVM_GET_REGS /
 * KVM_SET_REGS). Immutable; {@link #toBytes()} gives the kernel's struct bytes, which is the
 * form to carry in a migration stream.
 */
public record KvmRegs(long rax, long rbx, long rcx, long rdx, long rsi, long rdi, long rsp, long rbp,
                      long r8, long r9, long r10, long r11, long r12, long r13, long r14, long r15,
                      long rip, long rflags) {

    /** Size of struct kvm_regs in bytes. */
    public static final int BYTES = (int) KvmStructs.KVM_REGS.byteSize();

    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED;

    /** @return the registers held in a struct kvm_regs */
    public static KvmRegs read(MemorySegment s) {
        long[] r = new long[18];
        for (int i = 0; i < r.length; i++) {
            r[i] = s.get(U64, i * 8L);
        }
        return new KvmRegs(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11],
                r[12], r[13], r[14], r[15], r[16], r[17]);
    }

    /** Writes these registers as a struct kvm_regs at the start of {@code s}. */
    public void write(MemorySegment s) {
        long[] r = {rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp, r8, r9, r10, r11, r12, r13, r14, r15, rip, rflags};
        for (int i = 0; i < r.length; i++) {
            s.set(U64, i * 8L, r[i]);
        }
    }

    /** @return the struct kvm_regs bytes (little-endian, as the kernel lays them out) */
    public byte[] toBytes() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment s = arena.allocate(KvmStructs.KVM_REGS);
            write(s);
            return s.toArray(ValueLayout.JAVA_BYTE);
        }
    }

    /** @return the registers in bytes made by {@link #toBytes()} */
    public static KvmRegs fromBytes(byte[] bytes) {
        if (bytes.length != BYTES) {
            throw new IllegalArgumentException("struct kvm_regs is " + BYTES + " bytes, got " + bytes.length);
        }
        return read(MemorySegment.ofArray(bytes));
    }
}
