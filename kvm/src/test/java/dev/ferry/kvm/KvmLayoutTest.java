package dev.ferry.kvm;

import static java.lang.foreign.MemoryLayout.PathElement.groupElement;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemoryLayout.PathElement;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Checks every Java layout and ioctl number against the installed {@code <linux/kvm.h>}: a C
 * program compiled here with gcc prints the sizeof/offsetof and macro values, and each must
 * equal what the Java side computes.
 */
class KvmLayoutTest {

    /** C expression → the value Java computes for it. */
    private final Map<String, Long> expected = new LinkedHashMap<>();

    private void size(String cType, MemoryLayout layout) {
        expected.put("sizeof(" + cType + ")", layout.byteSize());
    }

    private void offset(String cType, String cPath, MemoryLayout layout, String... javaPath) {
        PathElement[] path = new PathElement[javaPath.length];
        for (int i = 0; i < javaPath.length; i++) {
            path[i] = groupElement(javaPath[i]);
        }
        expected.put("offsetof(" + cType + ", " + cPath + ")", layout.byteOffset(path));
    }

    private void fields(String cType, MemoryLayout layout, String... names) {
        size(cType, layout);
        for (String name : names) {
            offset(cType, name, layout, name);
        }
    }

    private void constant(String macro, long value) {
        expected.put(macro, value);
    }

    private void describe() {
        fields("struct kvm_userspace_memory_region", KvmStructs.KVM_USERSPACE_MEMORY_REGION,
                "slot", "flags", "guest_phys_addr", "memory_size", "userspace_addr");
        fields("struct kvm_dirty_log", KvmStructs.KVM_DIRTY_LOG, "slot", "dirty_bitmap");
        fields("struct kvm_clear_dirty_log", KvmStructs.KVM_CLEAR_DIRTY_LOG, "slot", "num_pages", "first_page",
                "dirty_bitmap");
        fields("struct kvm_enable_cap", KvmStructs.KVM_ENABLE_CAP, "cap", "flags", "args", "pad");
        fields("struct kvm_dirty_gfn", KvmStructs.KVM_DIRTY_GFN, "flags", "slot", "offset");
        fields("struct kvm_regs", KvmStructs.KVM_REGS, "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
                "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags");
        fields("struct kvm_segment", KvmStructs.KVM_SEGMENT, "base", "limit", "selector", "type", "present", "dpl",
                "db", "s", "l", "g", "avl", "unusable", "padding");
        fields("struct kvm_dtable", KvmStructs.KVM_DTABLE, "base", "limit", "padding");
        fields("struct kvm_sregs", KvmStructs.KVM_SREGS, "cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt", "gdt",
                "idt", "cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apic_base", "interrupt_bitmap");
        fields("struct kvm_cpuid_entry2", KvmStructs.KVM_CPUID_ENTRY2, "function", "index", "flags", "eax", "ebx",
                "ecx", "edx", "padding");
        fields("struct kvm_cpuid2", KvmStructs.KVM_CPUID2, "nent", "padding");
        expected.put("offsetof(struct kvm_cpuid2, entries)", KvmStructs.KVM_CPUID2.byteSize());

        fields("struct kvm_run", KvmStructs.KVM_RUN, "request_interrupt_window", "immediate_exit", "padding1",
                "exit_reason", "ready_for_interrupt_injection", "if_flag", "flags", "cr8", "apic_base",
                "kvm_valid_regs", "kvm_dirty_regs", "s");
        String run = "struct kvm_run";
        for (String f : new String[]{"direction", "size", "port", "count", "data_offset"}) {
            offset(run, "io." + f, KvmStructs.KVM_RUN, "exit", "io", f);
        }
        for (String f : new String[]{"phys_addr", "data", "len", "is_write"}) {
            offset(run, "mmio." + f, KvmStructs.KVM_RUN, "exit", "mmio", f);
        }
        offset(run, "hw.hardware_exit_reason", KvmStructs.KVM_RUN, "exit", "hw", "hardware_exit_reason");
        offset(run, "fail_entry.hardware_entry_failure_reason", KvmStructs.KVM_RUN, "exit", "fail_entry",
                "hardware_entry_failure_reason");
        offset(run, "fail_entry.cpu", KvmStructs.KVM_RUN, "exit", "fail_entry", "cpu");
        offset(run, "internal.suberror", KvmStructs.KVM_RUN, "exit", "internal", "suberror");
        offset(run, "internal.ndata", KvmStructs.KVM_RUN, "exit", "internal", "ndata");
        offset(run, "internal.data", KvmStructs.KVM_RUN, "exit", "internal", "data");
        offset(run, "padding", KvmStructs.KVM_RUN, "exit", "padding");

        constant("KVM_API_VERSION", KvmIoctls.KVM_API_VERSION);
        constant("KVMIO", KvmIoctls.KVMIO);
        constant("KVM_GET_API_VERSION", KvmIoctls.KVM_GET_API_VERSION);
        constant("KVM_CREATE_VM", KvmIoctls.KVM_CREATE_VM);
        constant("KVM_CHECK_EXTENSION", KvmIoctls.KVM_CHECK_EXTENSION);
        constant("KVM_GET_VCPU_MMAP_SIZE", KvmIoctls.KVM_GET_VCPU_MMAP_SIZE);
        constant("KVM_GET_SUPPORTED_CPUID", KvmIoctls.KVM_GET_SUPPORTED_CPUID);
        constant("KVM_CREATE_VCPU", KvmIoctls.KVM_CREATE_VCPU);
        constant("KVM_GET_DIRTY_LOG", KvmIoctls.KVM_GET_DIRTY_LOG);
        constant("KVM_SET_USER_MEMORY_REGION", KvmIoctls.KVM_SET_USER_MEMORY_REGION);
        constant("KVM_SET_TSS_ADDR", KvmIoctls.KVM_SET_TSS_ADDR);
        constant("KVM_SET_IDENTITY_MAP_ADDR", KvmIoctls.KVM_SET_IDENTITY_MAP_ADDR);
        constant("KVM_ENABLE_CAP", KvmIoctls.KVM_ENABLE_CAP);
        constant("KVM_CLEAR_DIRTY_LOG", KvmIoctls.KVM_CLEAR_DIRTY_LOG);
        constant("KVM_RESET_DIRTY_RINGS", KvmIoctls.KVM_RESET_DIRTY_RINGS);
        constant("KVM_RUN", KvmIoctls.KVM_RUN);
        constant("KVM_GET_REGS", KvmIoctls.KVM_GET_REGS);
        constant("KVM_SET_REGS", KvmIoctls.KVM_SET_REGS);
        constant("KVM_GET_SREGS", KvmIoctls.KVM_GET_SREGS);
        constant("KVM_SET_SREGS", KvmIoctls.KVM_SET_SREGS);
        constant("KVM_SET_CPUID2", KvmIoctls.KVM_SET_CPUID2);
        constant("KVM_CAP_USER_MEMORY", KvmIoctls.KVM_CAP_USER_MEMORY);
        constant("KVM_CAP_SET_TSS_ADDR", KvmIoctls.KVM_CAP_SET_TSS_ADDR);
        constant("KVM_CAP_EXT_CPUID", KvmIoctls.KVM_CAP_EXT_CPUID);
        constant("KVM_CAP_READONLY_MEM", KvmIoctls.KVM_CAP_READONLY_MEM);
        constant("KVM_CAP_NR_VCPUS", KvmIoctls.KVM_CAP_NR_VCPUS);
        constant("KVM_CAP_NR_MEMSLOTS", KvmIoctls.KVM_CAP_NR_MEMSLOTS);
        constant("KVM_CAP_MAX_VCPUS", KvmIoctls.KVM_CAP_MAX_VCPUS);
        constant("KVM_CAP_CHECK_EXTENSION_VM", KvmIoctls.KVM_CAP_CHECK_EXTENSION_VM);
        constant("KVM_CAP_IMMEDIATE_EXIT", KvmIoctls.KVM_CAP_IMMEDIATE_EXIT);
        constant("KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", KvmIoctls.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
        constant("KVM_CAP_DIRTY_LOG_RING", KvmIoctls.KVM_CAP_DIRTY_LOG_RING);
        constant("KVM_CAP_DIRTY_LOG_RING_ACQ_REL", KvmIoctls.KVM_CAP_DIRTY_LOG_RING_ACQ_REL);
        constant("KVM_MEM_LOG_DIRTY_PAGES", KvmIoctls.KVM_MEM_LOG_DIRTY_PAGES);
        constant("KVM_MEM_READONLY", KvmIoctls.KVM_MEM_READONLY);
        constant("KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE", KvmIoctls.KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE);
        constant("KVM_DIRTY_LOG_INITIALLY_SET", KvmIoctls.KVM_DIRTY_LOG_INITIALLY_SET);
        constant("KVM_DIRTY_GFN_F_DIRTY", KvmIoctls.KVM_DIRTY_GFN_F_DIRTY);
        constant("KVM_DIRTY_GFN_F_RESET", KvmIoctls.KVM_DIRTY_GFN_F_RESET);
        constant("KVM_DIRTY_LOG_PAGE_OFFSET", KvmIoctls.KVM_DIRTY_LOG_PAGE_OFFSET);
        constant("KVM_NR_INTERRUPTS", KvmStructs.KVM_NR_INTERRUPTS);
        for (var e : new Object[][]{
                {"KVM_EXIT_UNKNOWN", KvmIoctls.KVM_EXIT_UNKNOWN}, {"KVM_EXIT_EXCEPTION", KvmIoctls.KVM_EXIT_EXCEPTION},
                {"KVM_EXIT_IO", KvmIoctls.KVM_EXIT_IO}, {"KVM_EXIT_HYPERCALL", KvmIoctls.KVM_EXIT_HYPERCALL},
                {"KVM_EXIT_DEBUG", KvmIoctls.KVM_EXIT_DEBUG}, {"KVM_EXIT_HLT", KvmIoctls.KVM_EXIT_HLT},
                {"KVM_EXIT_MMIO", KvmIoctls.KVM_EXIT_MMIO}, {"KVM_EXIT_SHUTDOWN", KvmIoctls.KVM_EXIT_SHUTDOWN},
                {"KVM_EXIT_FAIL_ENTRY", KvmIoctls.KVM_EXIT_FAIL_ENTRY}, {"KVM_EXIT_INTR", KvmIoctls.KVM_EXIT_INTR},
                {"KVM_EXIT_INTERNAL_ERROR", KvmIoctls.KVM_EXIT_INTERNAL_ERROR},
                {"KVM_EXIT_SYSTEM_EVENT", KvmIoctls.KVM_EXIT_SYSTEM_EVENT},
                {"KVM_EXIT_DIRTY_RING_FULL", KvmIoctls.KVM_EXIT_DIRTY_RING_FULL},
                {"KVM_EXIT_IO_IN", KvmIoctls.KVM_EXIT_IO_IN}, {"KVM_EXIT_IO_OUT", KvmIoctls.KVM_EXIT_IO_OUT}}) {
            constant((String) e[0], ((Integer) e[1]).longValue());
        }
    }

    @Test
    void javaLayoutsAndIoctlNumbersMatchTheInstalledKernelHeader(@TempDir Path dir) throws Exception {
        Path header = Path.of("/usr/include/linux/kvm.h");
        assumeTrue(Files.isRegularFile(header), "skipped: " + header + " is missing (install linux-libc-dev)");
        assumeTrue(onPath("gcc"), "skipped: gcc is not installed, so the C side of the check cannot be built");
        describe();

        StringBuilder c = new StringBuilder("#include <stdio.h>\n#include <stddef.h>\n#include <linux/kvm.h>\n"
                + "int main(void) {\n");
        for (String expr : expected.keySet()) {
            c.append("    printf(\"%s=%llu\\n\", \"").append(expr.replace("\"", "\\\"")).append("\", (unsigned long long) (")
                    .append(expr).append("));\n");
        }
        c.append("    return 0;\n}\n");
        Path source = dir.resolve("kvm_layout.c");
        Path binary = dir.resolve("kvm_layout");
        Files.writeString(source, c);
        String compile = run(List.of("gcc", "-O0", "-o", binary.toString(), source.toString()));
        assertTrue(Files.isExecutable(binary), "gcc failed:\n" + compile);
        String output = run(List.of(binary.toString()));

        Map<String, Long> actual = new LinkedHashMap<>();
        for (String line : output.split("\n")) {
            int eq = line.lastIndexOf('=');
            if (eq > 0) {
                actual.put(line.substring(0, eq), Long.parseUnsignedLong(line.substring(eq + 1).trim()));
            }
        }
        List<String> mismatches = new ArrayList<>();
        expected.forEach((expr, javaValue) -> {
            Long cValue = actual.get(expr);
            if (!javaValue.equals(cValue)) {
                mismatches.add(expr + ": C " + cValue + ", Java " + javaValue);
            }
        });
        assertEquals(List.of(), mismatches, "Java layouts/constants differ from <linux/kvm.h>");
        assertEquals(expected.size(), actual.size(), "the C program printed every value");
    }

    private static boolean onPath(String tool) {
        for (String d : System.getenv().getOrDefault("PATH", "").split(":")) {
            if (!d.isEmpty() && Files.isExecutable(Path.of(d, tool))) {
                return true;
            }
        }
        return false;
    }

    private static String run(List<String> command) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "timed out: " + command);
        assertEquals(0, p.exitValue(), command + " failed:\n" + out);
        return out;
    }
}
