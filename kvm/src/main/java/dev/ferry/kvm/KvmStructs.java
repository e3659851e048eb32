package dev.ferry.kvm;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.StructLayout;
import java.lang.foreign.UnionLayout;

/**
 * The KVM uapi structures Ferry passes to ioctls, as {@code java.lang.foreign} layouts with the
 * kernel's field names. Sources: include/uapi/linux/kvm.h and arch/x86/include/uapi/asm/kvm.h
 * (x86-64). Every size and offset is checked against the installed {@code <linux/kvm.h>} by
 * a test that compiles a C program with gcc.
 */
public final class KvmStructs {

    /** struct kvm_userspace_memory_region, for KVM_SET_USER_MEMORY_REGION. */
    public static final StructLayout KVM_USERSPACE_MEMORY_REGION = MemoryLayout.structLayout(
            JAVA_INT.withName("slot"),
            JAVA_INT.withName("flags"),
            JAVA_LONG.withName("guest_phys_addr"),
            JAVA_LONG.withName("memory_size"),
            JAVA_LONG.withName("userspace_addr")).withName("kvm_userspace_memory_region");

    /** struct kvm_dirty_log, for KVM_GET_DIRTY_LOG (the bitmap pointer shares a union with a u64). */
    public static final StructLayout KVM_DIRTY_LOG = MemoryLayout.structLayout(
            JAVA_INT.withName("slot"),
            JAVA_INT.withName("padding1"),
            ADDRESS.withName("dirty_bitmap")).withName("kvm_dirty_log");

    /** struct kvm_clear_dirty_log, for KVM_CLEAR_DIRTY_LOG. */
    public static final StructLayout KVM_CLEAR_DIRTY_LOG = MemoryLayout.structLayout(
            JAVA_INT.withName("slot"),
            JAVA_INT.withName("num_pages"),
            JAVA_LONG.withName("first_page"),
            ADDRESS.withName("dirty_bitmap")).withName("kvm_clear_dirty_log");

    /** struct kvm_enable_cap, for KVM_ENABLE_CAP on a VM or vCPU fd. */
    public static final StructLayout KVM_ENABLE_CAP = MemoryLayout.structLayout(
            JAVA_INT.withName("cap"),
            JAVA_INT.withName("flags"),
            MemoryLayout.sequenceLayout(4, JAVA_LONG).withName("args"),
            MemoryLayout.sequenceLayout(64, JAVA_BYTE).withName("pad")).withName("kvm_enable_cap");

    /** struct kvm_dirty_gfn: one entry of a vCPU's dirty ring. */
    public static final StructLayout KVM_DIRTY_GFN = MemoryLayout.structLayout(
            JAVA_INT.withName("flags"),
            JAVA_INT.withName("slot"),
            JAVA_LONG.withName("offset")).withName("kvm_dirty_gfn");

    /** struct kvm_regs (x86): the general-purpose registers, rip and rflags. */
    public static final StructLayout KVM_REGS = MemoryLayout.structLayout(
            JAVA_LONG.withName("rax"), JAVA_LONG.withName("rbx"), JAVA_LONG.withName("rcx"),
            JAVA_LONG.withName("rdx"), JAVA_LONG.withName("rsi"), JAVA_LONG.withName("rdi"),
            JAVA_LONG.withName("rsp"), JAVA_LONG.withName("rbp"),
            JAVA_LONG.withName("r8"), JAVA_LONG.withName("r9"), JAVA_LONG.withName("r10"),
            JAVA_LONG.withName("r11"), JAVA_LONG.withName("r12"), JAVA_LONG.withName("r13"),
            JAVA_LONG.withName("r14"), JAVA_LONG.withName("r15"),
            JAVA_LONG.withName("rip"), JAVA_LONG.withName("rflags")).withName("kvm_regs");

    /** struct kvm_segment (x86). */
    public static final StructLayout KVM_SEGMENT = MemoryLayout.structLayout(
            JAVA_LONG.withName("base"),
            JAVA_INT.withName("limit"),
            JAVA_SHORT.withName("selector"),
            JAVA_BYTE.withName("type"),
            JAVA_BYTE.withName("present"),
            JAVA_BYTE.withName("dpl"),
            JAVA_BYTE.withName("db"),
            JAVA_BYTE.withName("s"),
            JAVA_BYTE.withName("l"),
            JAVA_BYTE.withName("g"),
            JAVA_BYTE.withName("avl"),
            JAVA_BYTE.withName("unusable"),
            JAVA_BYTE.withName("padding")).withName("kvm_segment");

    /** struct kvm_dtable (x86): a descriptor-table register (GDTR, IDTR). */
    public static final StructLayout KVM_DTABLE = MemoryLayout.structLayout(
            JAVA_LONG.withName("base"),
            JAVA_SHORT.withName("limit"),
            MemoryLayout.sequenceLayout(3, JAVA_SHORT).withName("padding")).withName("kvm_dtable");

    /** KVM_NR_INTERRUPTS (arch/x86/include/uapi/asm/kvm.h). */
    static final int KVM_NR_INTERRUPTS = 256;

    /** struct kvm_sregs (x86): segments, descriptor tables, control registers, EFER. */
    public static final StructLayout KVM_SREGS = MemoryLayout.structLayout(
            KVM_SEGMENT.withName("cs"), KVM_SEGMENT.withName("ds"), KVM_SEGMENT.withName("es"),
            KVM_SEGMENT.withName("fs"), KVM_SEGMENT.withName("gs"), KVM_SEGMENT.withName("ss"),
            KVM_SEGMENT.withName("tr"), KVM_SEGMENT.withName("ldt"),
            KVM_DTABLE.withName("gdt"), KVM_DTABLE.withName("idt"),
            JAVA_LONG.withName("cr0"), JAVA_LONG.withName("cr2"), JAVA_LONG.withName("cr3"),
            JAVA_LONG.withName("cr4"), JAVA_LONG.withName("cr8"),
            JAVA_LONG.withName("efer"), JAVA_LONG.withName("apic_base"),
            MemoryLayout.sequenceLayout((KVM_NR_INTERRUPTS + 63) / 64, JAVA_LONG).withName("interrupt_bitmap"))
            .withName("kvm_sregs");

    /** struct kvm_cpuid_entry2: one CPUID leaf (function, index) and its four result registers. */
    public static final StructLayout KVM_CPUID_ENTRY2 = MemoryLayout.structLayout(
            JAVA_INT.withName("function"),
            JAVA_INT.withName("index"),
            JAVA_INT.withName("flags"),
            JAVA_INT.withName("eax"),
            JAVA_INT.withName("ebx"),
            JAVA_INT.withName("ecx"),
            JAVA_INT.withName("edx"),
            MemoryLayout.sequenceLayout(3, JAVA_INT).withName("padding")).withName("kvm_cpuid_entry2");

    /** struct kvm_cpuid2 without its flexible {@code entries[]}, which follow at offset 8. */
    public static final StructLayout KVM_CPUID2 = MemoryLayout.structLayout(
            JAVA_INT.withName("nent"),
            JAVA_INT.withName("padding")).withName("kvm_cpuid2");

    /** The io member of kvm_run's exit union (KVM_EXIT_IO); data is at data_offset from kvm_run's start. */
    public static final StructLayout KVM_RUN_IO = MemoryLayout.structLayout(
            JAVA_BYTE.withName("direction"),
            JAVA_BYTE.withName("size"),
            JAVA_SHORT.withName("port"),
            JAVA_INT.withName("count"),
            JAVA_LONG.withName("data_offset")).withName("io");

    /** The mmio member of kvm_run's exit union (KVM_EXIT_MMIO). */
    public static final StructLayout KVM_RUN_MMIO = MemoryLayout.structLayout(
            JAVA_LONG.withName("phys_addr"),
            MemoryLayout.sequenceLayout(8, JAVA_BYTE).withName("data"),
            JAVA_INT.withName("len"),
            JAVA_BYTE.withName("is_write"),
            MemoryLayout.paddingLayout(3)).withName("mmio");

    /**
     * kvm_run's anonymous exit union, with the members Ferry reads; the kernel pads it to 256
     * bytes ({@code char padding[256]}).
     */
    public static final UnionLayout KVM_RUN_EXIT = MemoryLayout.unionLayout(
            MemoryLayout.structLayout(JAVA_LONG.withName("hardware_exit_reason")).withName("hw"),
            MemoryLayout.structLayout(
                    JAVA_LONG.withName("hardware_entry_failure_reason"),
                    JAVA_INT.withName("cpu"),
                    MemoryLayout.paddingLayout(4)).withName("fail_entry"),
            KVM_RUN_IO,
            KVM_RUN_MMIO,
            MemoryLayout.structLayout(
                    JAVA_INT.withName("suberror"),
                    JAVA_INT.withName("ndata"),
                    MemoryLayout.sequenceLayout(16, JAVA_LONG).withName("data")).withName("internal"),
            MemoryLayout.sequenceLayout(256, JAVA_BYTE).withName("padding")).withName("exit");

    /**
     * struct kvm_run (x86), the page shared with the kernel at offset 0 of a vCPU fd. The union
     * member is named {@code exit} here (anonymous in C); {@code s} is kvm_sync_regs' 2 KiB union.
     */
    public static final StructLayout KVM_RUN = MemoryLayout.structLayout(
            JAVA_BYTE.withName("request_interrupt_window"),
            JAVA_BYTE.withName("immediate_exit"),
            MemoryLayout.sequenceLayout(6, JAVA_BYTE).withName("padding1"),
            JAVA_INT.withName("exit_reason"),
            JAVA_BYTE.withName("ready_for_interrupt_injection"),
            JAVA_BYTE.withName("if_flag"),
            JAVA_SHORT.withName("flags"),
            JAVA_LONG.withName("cr8"),
            JAVA_LONG.withName("apic_base"),
            KVM_RUN_EXIT,
            JAVA_LONG.withName("kvm_valid_regs"),
            JAVA_LONG.withName("kvm_dirty_regs"),
            MemoryLayout.sequenceLayout(2048, JAVA_BYTE).withName("s")).withName("kvm_run");

    private KvmStructs() {
    }
}
