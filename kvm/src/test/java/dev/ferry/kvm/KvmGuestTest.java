package dev.ferry.kvm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.ferry.memory.MemfdRamBlock;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.BitSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Real KVM: VMs, memslots, guests running generated code, dirty bitmaps, manual protect, dirty rings, registers. */
@Tag(KvmTestSupport.TAG)
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class KvmGuestTest {

    private static final long WS_PAGE = TestGuest.WORKING_SET / 4096;

    @BeforeEach
    void needKvm() {
        KvmTestSupport.assumeKvm();
    }

    @Test
    void createsVmWithMemfdSlotAndVcpu() {
        try (TestGuest g = new TestGuest()) {
            assertEquals(KvmIoctls.KVM_API_VERSION, g.kvm.apiVersion());
            assertTrue(g.kvm.checkExtension(KvmIoctls.KVM_CAP_USER_MEMORY) > 0);
            assertTrue(g.kvm.vcpuMmapSize() >= KvmStructs.KVM_RUN.byteSize());
            assertFalse(g.kvm.supportedCpuid().entries().isEmpty());
            g.addRam(0);
            try (KvmVcpu vcpu = g.vm.createVcpu(0)) {
                assertEquals(0, vcpu.id());
                assertEquals(2, vcpu.getRegs().rflags() & 2, "RFLAGS bit 1 is always set");
                assertTrue(vcpu.getSregs().cs().present());
            }
            assertThrows(IllegalArgumentException.class, () -> g.vm.getDirtyLog(0, g.arena.allocate(8)),
                    "a bitmap too small for the slot would let the kernel write past it");
        }
    }

    @Test
    void sequentialGuestIsReportedExactlyByTheDirtyBitmapAndCountsRight() {
        long pages = (8L << 20) / 4096;
        try (TestGuest g = new TestGuest()) {
            g.addRam(KvmIoctls.KVM_MEM_LOG_DIRTY_PAGES);
            g.start(new GuestCode.Program(GuestCode.Pattern.SEQUENTIAL, 1, 256, TestGuest.PORT),
                    GuestCode.Slice.sequential(TestGuest.WORKING_SET, pages * 4096));
            g.dirtyLog(); // start from a clean log

            long written = g.runPacingExits((int) (pages / 256), r -> fail("exit " + r));
            assertEquals(pages, written, "one lap");
            assertEquals(pages, g.written());
            assertEquals(TestGuest.range(WS_PAGE, pages), withoutSystemPages(g.dirtyLog()));
            assertCounters(g.ram.host(), pages, written);

            // Half a lap more: exactly the first half is dirty again, and counts 2.
            written = g.runPacingExits((int) (pages / 2 / 256), r -> fail("exit " + r));
            assertEquals(pages * 3 / 2, written);
            assertEquals(TestGuest.range(WS_PAGE, pages / 2), withoutSystemPages(g.dirtyLog()));
            assertCounters(g.ram.host(), pages, written);
        }
    }

    @Test
    void randomGuestWritesAreAllReported() {
        long pages = (8L << 20) / 4096;
        try (TestGuest g = new TestGuest()) {
            g.addRam(KvmIoctls.KVM_MEM_LOG_DIRTY_PAGES);
            g.start(new GuestCode.Program(GuestCode.Pattern.RANDOM, 64, 200, TestGuest.PORT),
                    new GuestCode.Slice(TestGuest.WORKING_SET, pages * 4096, 0x5DEECE66DL, 1, 1));
            for (int round = 0; round < 3; round++) {
                g.dirtyLog();
                byte[] before = g.ram.host().toArray(ValueLayout.JAVA_BYTE);
                g.runPacingExits(3, r -> fail("exit " + r));
                BitSet dirty = g.dirtyLog();
                BitSet changed = changedPages(before, g.ram.host().toArray(ValueLayout.JAVA_BYTE));
                assertFalse(changed.isEmpty());
                BitSet missed = (BitSet) changed.clone();
                missed.andNot(dirty);
                assertEquals(new BitSet(), missed, "changed pages the dirty log did not report");
                BitSet outside = withoutSystemPages(dirty);
                outside.andNot(TestGuest.range(WS_PAGE, pages));
                assertEquals(new BitSet(), outside, "dirty pages outside the working set");
                assertTrue(withoutSystemPages(dirty).cardinality() <= 600, "at most one page per write");
            }
        }
    }

    @Test
    void manualProtectReportsUntilClearedAndOnlyNewWritesAfter() {
        long pages = 1024;
        try (TestGuest g = new TestGuest()) {
            int flags = g.vm.enableManualDirtyLogProtect();
            assumeTrue(flags != 0, "skipped: this kernel has no KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2");
            g.addRam(KvmIoctls.KVM_MEM_LOG_DIRTY_PAGES);
            BitSet all = TestGuest.range(0, TestGuest.RAM_BYTES / 4096);
            if ((flags & KvmIoctls.KVM_DIRTY_LOG_INITIALLY_SET) != 0) {
                assertEquals(all, g.dirtyLog(), "INITIALLY_SET: every page starts dirty");
            }
            MemorySegment ones = g.bitmap().fill((byte) 0xFF);
            g.vm.clearDirtyLog(0, 0, (int) (TestGuest.RAM_BYTES / 4096), ones);
            assertEquals(new BitSet(), g.dirtyLog(), "cleared");

            g.start(new GuestCode.Program(GuestCode.Pattern.SEQUENTIAL, 1, 128, TestGuest.PORT),
                    GuestCode.Slice.sequential(TestGuest.WORKING_SET, pages * 4096));
            g.runPacingExits(4, r -> fail("exit " + r)); // 512 pages
            BitSet first = TestGuest.range(WS_PAGE, 512);
            assertEquals(first, withoutSystemPages(g.dirtyLog()));
            assertEquals(first, withoutSystemPages(g.dirtyLog()), "GET does not clear under manual protect");

            // Clear only the first 256 written pages (64-page aligned), then write the next 256.
            MemorySegment clear = g.bitmap();
            clear.asSlice(0, 256 / 8).fill((byte) 0xFF);
            g.vm.clearDirtyLog(0, WS_PAGE, 256, clear);
            g.runPacingExits(2, r -> fail("exit " + r)); // pages 512..767
            BitSet expected = TestGuest.range(WS_PAGE + 256, 512);
            assertEquals(expected, withoutSystemPages(g.dirtyLog()));
            assertThrows(IllegalArgumentException.class, () -> g.vm.clearDirtyLog(0, 1, 64, clear), "unaligned");
        }
    }

    @Test
    void dirtyRingReportsEveryWrittenPage() {
        long pages = 2048;
        try (TestGuest g = new TestGuest()) {
            int max = g.vm.maxDirtyRingBytes();
            assumeTrue(max >= 4096 * 16, "skipped: no KVM dirty ring of 4096 entries here (max " + max + " bytes)");
            g.vm.enableDirtyRing(4096 * 16);
            g.addRam(KvmIoctls.KVM_MEM_LOG_DIRTY_PAGES);
            KvmVcpu vcpu = g.start(new GuestCode.Program(GuestCode.Pattern.SEQUENTIAL, 1, 256, TestGuest.PORT),
                    GuestCode.Slice.sequential(TestGuest.WORKING_SET, pages * 4096));
            assertThrows(IllegalStateException.class, () -> g.vm.enableDirtyRing(4096 * 16), "after a vCPU");
            KvmDirtyRing ring = vcpu.dirtyRing();
            assertEquals(4096, ring.size());

            BitSet harvested = new BitSet();
            int[] reset = {0};
            Runnable reap = () -> {
                int n = ring.harvest((slot, offset) -> {
                    assertEquals(0, slot);
                    harvested.set((int) offset);
                });
                int r = g.vm.resetDirtyRings();
                assertEquals(n, r, "KVM_RESET_DIRTY_RINGS resets what was harvested");
                reset[0] += r;
            };
            for (int exit = 0; exit < pages / 256; exit++) {
                g.runPacingExits(1, reason -> {
                    int before = reset[0];
                    reap.run();
                    if (reason == KvmIoctls.KVM_EXIT_DIRTY_RING_FULL && reset[0] == before) {
                        fail("KVM_EXIT_DIRTY_RING_FULL with nothing to harvest: dirty pages were lost");
                    }
                });
                reap.run();
            }
            assertEquals(TestGuest.range(WS_PAGE, pages), withoutSystemPages(harvested));
            assertTrue(reset[0] >= pages);
            assertCounters(g.ram.host(), pages, pages);
        }
    }

    /**
     * A ring filled on purpose: the guest dirties four times the ring's size between pacing exits
     * and nothing reaps but the full exits. KVM must stop the vCPU with KVM_EXIT_DIRTY_RING_FULL
     * before an entry is lost, refuse to run it again until the ring is reset, and every page
     * written must come out of the ring.
     */
    @Test
    void aRingFilledOnPurposeStopsTheVcpuAndLosesNothing() {
        int entries = 512; // 8 KiB, the smallest ring (a page) is 256
        long pages = 4L * entries;
        try (TestGuest g = new TestGuest()) {
            int max = g.vm.maxDirtyRingBytes();
            assumeTrue(max >= entries * 16, "skipped: no KVM dirty ring of " + entries + " entries here (max " + max + " bytes)");
            g.vm.enableDirtyRing(entries * 16);
            g.addRam(KvmIoctls.KVM_MEM_LOG_DIRTY_PAGES);
            KvmVcpu vcpu = g.start(new GuestCode.Program(GuestCode.Pattern.SEQUENTIAL, 1, (int) pages, TestGuest.PORT),
                    GuestCode.Slice.sequential(TestGuest.WORKING_SET, pages * 4096));
            KvmDirtyRing ring = vcpu.dirtyRing();
            BitSet harvested = new BitSet();
            int fullExits = 0;
            while (true) {
                int reason = vcpu.run();
                if (reason == KvmIoctls.KVM_EXIT_IO && vcpu.ioPort() == TestGuest.PORT) {
                    break;
                }
                assertEquals(KvmIoctls.KVM_EXIT_DIRTY_RING_FULL, reason, vcpu.describeExit());
                fullExits++;
                if (fullExits == 1) {
                    long written = g.written();
                    assertEquals(KvmIoctls.KVM_EXIT_DIRTY_RING_FULL, vcpu.run(), "a full ring keeps the vCPU out");
                    assertEquals(written, g.written(), "no write while the ring is full");
                    assertTrue(written < entries, "stopped before the ring could overflow: " + written + " writes");
                }
                int n = ring.harvest((slot, offset) -> harvested.set((int) offset));
                assertTrue(n > 0, "KVM_EXIT_DIRTY_RING_FULL with nothing to harvest: entries were lost");
                assertEquals(n, g.vm.resetDirtyRings());
            }
            ring.harvest((slot, offset) -> harvested.set((int) offset));
            g.vm.resetDirtyRings();
            assertTrue(fullExits >= 3, "the ring filled " + fullExits + " times for " + pages + " pages");
            assertEquals(TestGuest.range(WS_PAGE, pages), withoutSystemPages(harvested));
            assertCounters(g.ram.host(), pages, pages);
        }
    }

    @Test
    void registersCarryARunningGuestToANewVm() {
        long pages = 256;
        GuestCode.Program program = new GuestCode.Program(GuestCode.Pattern.SEQUENTIAL, 16, 100, TestGuest.PORT);
        KvmRegs regs;
        KvmSregs sregs;
        try (TestGuest source = new TestGuest(); TestGuest destination = new TestGuest()) {
            source.addRam(0);
            KvmVcpu vcpu = source.start(program, GuestCode.Slice.sequential(TestGuest.WORKING_SET, pages * 4096));
            assertEquals(300, source.runPacingExits(3, r -> fail("exit " + r)));
            vcpu.completePendingIo();
            regs = KvmRegs.fromBytes(vcpu.getRegs().toBytes());
            sregs = KvmSregs.fromBytes(vcpu.getSregs().toBytes());
            assertEquals(300, source.written(regs));
            assertEquals(300 % pages, regs.r10(), "next page");

            MemfdRamBlock target = destination.ram;
            MemorySegment.copy(source.ram.host(), 0, target.host(), 0, TestGuest.RAM_BYTES);
            destination.addRam(0);
            try (KvmVcpu moved = destination.vm.createVcpu(0)) {
                moved.setCpuid2(destination.kvm.supportedCpuid());
                moved.setSregs(sregs);
                moved.setRegs(regs);
                assertEquals(regs, moved.getRegs());
                // The destination's first exit comes after the 100 writes left in r12's count.
                long written = -1;
                for (int exits = 0; exits < 2; ) {
                    int reason = moved.run();
                    assertEquals(KvmIoctls.KVM_EXIT_IO, reason, moved.describeExit());
                    written = moved.ioValue();
                    exits++;
                }
                assertEquals(500, written);
                assertCounters(target.host(), pages, 500);
            }
        }
    }

    @Test
    void kickStopsAVcpuInGuestModeAndAnImmediateExitIsNotLost() throws Exception {
        try (TestGuest g = new TestGuest()) {
            g.addRam(0);
            KvmVcpu vcpu = g.start(new GuestCode.Program(GuestCode.Pattern.SEQUENTIAL, 1, Integer.MAX_VALUE,
                    TestGuest.PORT), GuestCode.Slice.sequential(TestGuest.WORKING_SET, 64 * 4096));
            CompletableFuture<Integer> exit = new CompletableFuture<>();
            Thread runner = Thread.ofPlatform().name("vcpu0").start(() -> {
                try {
                    exit.complete(vcpu.run());
                } catch (Throwable t) {
                    exit.completeExceptionally(t);
                }
            });
            Thread.sleep(200); // the guest never exits on its own
            assertFalse(exit.isDone(), () -> "guest exited by itself: " + vcpu.describeExit());
            vcpu.kick();
            assertEquals(KvmIoctls.KVM_EXIT_INTR, exit.get(5, TimeUnit.SECONDS));
            runner.join();
            long written = g.written();
            assertTrue(written > 0, "the guest ran");

            vcpu.kick(); // not running: the next KVM_RUN returns at once
            assertEquals(KvmIoctls.KVM_EXIT_INTR, vcpu.run());
            assertEquals(written, g.written(), "no guest code ran");
            // r15 counts a write once it is made, so wherever the kick landed it matches memory.
            assertCounters(g.ram.host(), 64, written);
        }
    }

    private static BitSet withoutSystemPages(BitSet pages) {
        BitSet copy = (BitSet) pages.clone();
        copy.andNot(TestGuest.systemPages());
        return copy;
    }

    private static BitSet changedPages(byte[] before, byte[] after) {
        BitSet changed = new BitSet();
        for (int page = 0; page < before.length / 4096; page++) {
            if (!java.util.Arrays.equals(before, page * 4096, page * 4096 + 4096, after, page * 4096, page * 4096 + 4096)) {
                changed.set(page);
            }
        }
        return changed;
    }

    private static void assertCounters(MemorySegment ram, long pages, long written) {
        for (long page = 0; page < pages; page++) {
            int actual = Byte.toUnsignedInt(ram.get(ValueLayout.JAVA_BYTE, TestGuest.WORKING_SET + page * 4096));
            int expected = GuestCode.expectedCounter(written, pages, page);
            if (actual != expected) {
                fail("counter of page " + page + " is " + actual + ", expected " + expected + " after " + written
                        + " writes of a " + pages + "-page slice");
            }
        }
    }
}
