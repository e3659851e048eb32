package dev.ferry.kvm;

import java.io.ByteArrayOutputStream;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Just enough of an x86-64 assembler for {@link GuestCode}: 64-bit register moves and
 * arithmetic, a few byte accesses through RDI, STOSB, DIV, OUT and rel32 branches to labels.
 * Encodings follow the Intel SDM, volume 2 (REX.W = 0x48, REX.R/REX.B extend ModRM.reg/rm).
 */
final class X86Assembler {

    static final int RAX = 0, RCX = 1, RDX = 2, RBX = 3, RSP = 4, RBP = 5, RSI = 6, RDI = 7;
    static final int R8 = 8, R9 = 9, R10 = 10, R11 = 11, R12 = 12, R13 = 13, R14 = 14, R15 = 15;

    // Condition codes for Jcc (SDM Table B-1).
    static final int CC_B = 0x2;   // below (unsigned <)
    static final int CC_E = 0x4;   // equal
    static final int CC_NE = 0x5;  // not equal

    private final ByteArrayOutputStream code = new ByteArrayOutputStream();
    private final Map<String, Integer> labels = new HashMap<>();
    private final List<Fixup> fixups = new ArrayList<>();

    private record Fixup(int at, String label) {
    }

    private X86Assembler emit(int... bytes) {
        for (int b : bytes) {
            code.write(b);
        }
        return this;
    }

    private void imm32(int v) {
        emit(v & 0xFF, (v >>> 8) & 0xFF, (v >>> 16) & 0xFF, (v >>> 24) & 0xFF);
    }

    private static int modrmReg(int reg, int rm) {
        return 0xC0 | ((reg & 7) << 3) | (rm & 7);
    }

    /** {@code op r/m64, r64} with both operands registers: REX.W op /r. */
    private X86Assembler rr(int opcode, int dst, int src) {
        return emit(0x48 | (src >= 8 ? 4 : 0) | (dst >= 8 ? 1 : 0), opcode, modrmReg(src, dst));
    }

    /** A one-operand group instruction on a 64-bit register: REX.W op /ext. */
    private X86Assembler group(int opcode, int ext, int reg) {
        return emit(0x48 | (reg >= 8 ? 1 : 0), opcode, modrmReg(ext, reg));
    }

    /** @return the offset of a label defined so far */
    int offsetOf(String name) {
        Integer at = labels.get(name);
        if (at == null) {
            throw new IllegalStateException("undefined label " + name);
        }
        return at;
    }

    X86Assembler label(String name) {
        if (labels.putIfAbsent(name, code.size()) != null) {
            throw new IllegalStateException("label " + name + " defined twice");
        }
        return this;
    }

    /** mov dst, src (64-bit). */
    X86Assembler mov(int dst, int src) {
        return rr(0x89, dst, src);
    }

    /** add dst, src (64-bit). */
    X86Assembler add(int dst, int src) {
        return rr(0x01, dst, src);
    }

    /** sub dst, src (64-bit). */
    X86Assembler sub(int dst, int src) {
        return rr(0x29, dst, src);
    }

    /** xor dst, src (64-bit). */
    X86Assembler xor(int dst, int src) {
        return rr(0x31, dst, src);
    }

    /** cmp a, b (64-bit): flags of a - b. */
    X86Assembler cmp(int a, int b) {
        return rr(0x39, a, b);
    }

    /** shl reg, imm8 (64-bit). */
    X86Assembler shl(int reg, int count) {
        return group(0xC1, 4, reg).emit(count);
    }

    /** shr reg, imm8 (64-bit, logical). */
    X86Assembler shr(int reg, int count) {
        return group(0xC1, 5, reg).emit(count);
    }

    /** inc reg (64-bit). */
    X86Assembler inc(int reg) {
        return group(0xFF, 0, reg);
    }

    /** dec reg (64-bit). */
    X86Assembler dec(int reg) {
        return group(0xFF, 1, reg);
    }

    /** div reg: unsigned RDX:RAX / reg, quotient to RAX, remainder to RDX. */
    X86Assembler div(int reg) {
        return group(0xF7, 6, reg);
    }

    /** mov reg32, imm32, which zero-extends into the 64-bit register. */
    X86Assembler movImm32(int reg, int value) {
        if (reg >= 8) {
            emit(0x41);
        }
        emit(0xB8 + (reg & 7));
        imm32(value);
        return this;
    }

    /** mov reg, imm64. */
    X86Assembler movImm64(int reg, long value) {
        emit(0x48 | (reg >= 8 ? 1 : 0), 0xB8 + (reg & 7));
        for (int i = 0; i < 8; i++) {
            emit((int) (value >>> (8 * i)) & 0xFF);
        }
        return this;
    }

    /** mov eax, r15d (the low 32 bits of a register into EAX; the rest of RAX becomes 0). */
    X86Assembler movEaxFrom(int reg) {
        if (reg >= 8) {
            emit(0x44);
        }
        return emit(0x89, modrmReg(reg, RAX));
    }

    /** inc byte [rdi]. */
    X86Assembler incByteAtRdi() {
        return emit(0xFE, 0x07);
    }

    /** mov al, [rdi]. */
    X86Assembler movAlFromRdi() {
        return emit(0x8A, 0x07);
    }

    /** stosb: store AL at [RDI] and advance RDI. */
    X86Assembler stosb() {
        return emit(0xAA);
    }

    /** out dx, eax. */
    X86Assembler outDxEax() {
        return emit(0xEF);
    }

    /** jmp rel32 to a label. */
    X86Assembler jmp(String label) {
        emit(0xE9);
        return fixup(label);
    }

    /** jcc rel32 to a label. */
    X86Assembler jcc(int condition, String label) {
        emit(0x0F, 0x80 | condition);
        return fixup(label);
    }

    private X86Assembler fixup(String label) {
        fixups.add(new Fixup(code.size(), label));
        imm32(0);
        return this;
    }

    /** @return the machine code, branches resolved */
    byte[] assemble() {
        byte[] bytes = code.toByteArray();
        for (Fixup f : fixups) {
            Integer target = labels.get(f.label());
            if (target == null) {
                throw new IllegalStateException("undefined label " + f.label());
            }
            int rel = target - (f.at() + 4);
            for (int i = 0; i < 4; i++) {
                bytes[f.at() + i] = (byte) (rel >>> (8 * i));
            }
        }
        return bytes;
    }
}
