package dev.ferry.kvm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

import dev.ferry.memory.MemfdRamBlock;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.BitSet;
import java.util.function.IntConsumer;

/**
 * A one-slot test VM on real KVM: memfd RAM at gpa 0 (slot 0), the guest program at 0x1000, page
 * tables at 0x2000, and the working set from 4 MiB on.
 */
final class TestGuest implements AutoCloseable {

    static final long RAM_BYTES = 16L << 20;
    static final long WORKING_SET = 4L << 20;
    static final int PORT = 0x510;
    static final GuestCode.Layout LAYOUT = new GuestCode.Layout(0x1000, 0x2000, RAM_BYTES);

    final Kvm kvm;
    final KvmVm vm;
    final MemfdRamBlock ram;
    final Arena arena = Arena.ofShared();
    private KvmVcpu vcpu;

    /** A VM with RAM but no slot or vCPU yet, so the test can enable capabilities first. */
    TestGuest() {
        kvm = Kvm.open();
        vm = kvm.createVm();
        ram = MemfdRamBlock.allocate("kvm-test", RAM_BYTES);
    }

    void addRam(int flags) {
        vm.setUserMemoryRegion(0, flags, 0, RAM_BYTES, ram.host());
    }

    private long commitRip = -1;

    KvmVcpu start(GuestCode.Program program, GuestCode.Slice slice) {
        GuestCode.load(ram.host(), 0, LAYOUT, program);
        commitRip = LAYOUT.codeGpa() + program.commitOffset();
        vcpu = vm.createVcpu(0);
        GuestCode.setUp(vcpu, kvm.supportedCpuid(), LAYOUT, slice);
        return vcpu;
    }

    KvmVcpu vcpu() {
        return vcpu;
    }

    /** @return the pages the started program has written, from the vCPU's registers */
    long written() {
        return GuestCode.pagesWritten(vcpu.getRegs(), commitRip);
    }

    /** @return the pages written according to saved registers of the started program */
    long written(KvmRegs regs) {
        return GuestCode.pagesWritten(regs, commitRip);
    }

    /**
     * Runs until {@code exits} pacing exits have happened, calling {@code onExit} with the exit
     * reason of anything else the caller wants to handle (dirty ring full); fails on other exits.
     *
     * @return the guest's page-write count at the last pacing exit, as the OUT reported it
     */
    long runPacingExits(int exits, IntConsumer onOtherExit) {
        long written = -1;
        for (int done = 0; done < exits; ) {
            int reason = vcpu.run();
            if (reason == KvmIoctls.KVM_EXIT_IO && vcpu.ioPort() == PORT) {
                assertEquals(KvmIoctls.KVM_EXIT_IO_OUT, vcpu.ioDirection());
                assertEquals(4, vcpu.ioSize());
                written = vcpu.ioValue();
                done++;
            } else if (reason == KvmIoctls.KVM_EXIT_DIRTY_RING_FULL || reason == KvmIoctls.KVM_EXIT_INTR) {
                onOtherExit.accept(reason);
            } else {
                fail("unexpected exit: " + vcpu.describeExit() + ", regs " + vcpu.getRegs());
            }
        }
        return written;
    }

    /** @return a native bitmap big enough for slot 0 */
    MemorySegment bitmap() {
        return arena.allocate(KvmVm.bitmapBytes(RAM_BYTES), 8);
    }

    /** @return slot 0's dirty pages now (KVM_GET_DIRTY_LOG) */
    BitSet dirtyLog() {
        MemorySegment bitmap = bitmap();
        vm.getDirtyLog(0, bitmap);
        return BitSet.valueOf(bitmap.asByteBuffer().order(java.nio.ByteOrder.LITTLE_ENDIAN));
    }

    /** @return pages [first, first + count) */
    static BitSet range(long first, long count) {
        BitSet set = new BitSet();
        set.set((int) first, (int) (first + count));
        return set;
    }

    /**
     * @return the code and page-table pages: KVM may report them dirty though the guest never
     *         writes them (the nested page walker takes page-table reads for writes, and the code
     *         page shows up once at its first fault; see src/test/c/lowpages.c, which shows the
     *         same from C with their content unchanged). No other page outside the working set may
     *         be reported.
     */
    static BitSet systemPages() {
        BitSet pages = range(LAYOUT.pageTablesGpa() / 4096, LAYOUT.pageTablesBytes() / 4096);
        pages.set((int) (LAYOUT.codeGpa() / 4096));
        return pages;
    }

    @Override
    public void close() {
        vm.close();
        kvm.close();
        ram.close();
        arena.close();
    }
}
