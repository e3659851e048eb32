package dev.ferry.kvm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.api.DirtyClient;
import dev.ferry.machine.Machine;
import dev.ferry.machine.MachineConfig;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.SequentialImage;
import dev.ferry.machine.workload.Workload;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.IoHandler;
import dev.ferry.memory.MemoryRegion;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.BooleanSupplier;

import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The kvm accelerator under a real {@link Machine}: guest program, pacing and pause, memslots
 * following the flat view, MMIO to I/O regions, dirty pages of deleted slots, vCPU state.
 * Needs /dev/kvm: skipped elsewhere, failed with FERRY_REQUIRE_KVM=1.
 */
@Tag(KvmTestSupport.TAG)
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class KvmMachineTest {

    private static final long MIB = 1L << 20;
    private static final long RAM = 32 * MIB;
    private static final int PAGE = 4096;

    @BeforeEach
    void needKvm() {
        KvmTestSupport.assumeKvm();
    }

    private static Workload sequential() {
        return Workload.of(Pattern.SEQUENTIAL, 0).withWorkingSet(KvmAccelerator.RESERVED_BYTES, 0);
    }

    private static Machine machine(int vcpus, Workload workload, Map<String, String> properties) {
        return Machine.create(MachineConfig.of(RAM, vcpus, workload).withAcceleratorProperties(properties),
                new KvmAcceleratorProvider());
    }

    private static void await(String what, BooleanSupplier condition, Machine m) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!condition.getAsBoolean()) {
            m.vcpuFailure().ifPresent(e -> {
                throw new AssertionError("vCPU failed", e);
            });
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out waiting for " + what);
            }
            Thread.sleep(5);
        }
    }

    @Test
    void runsTheWorkloadAndPausesPromptly() throws Exception {
        Workload w = sequential();
        try (Machine m = machine(2, w, Map.of()); Arena arena = Arena.ofConfined()) {
            assertEquals("kvm", m.accelerator().name());
            m.start();
            await("20000 pages written", () -> m.pagesWritten() > 20_000, m);
            m.pause();
            long written = m.pagesWritten();
            MemorySegment image = arena.allocate(RAM, PAGE).copyFrom(m.ram().host());
            Thread.sleep(50);
            assertEquals(written, m.pagesWritten(), "no progress while paused");
            assertEquals(-1, image.mismatch(m.ram().host()), "no guest write while paused");
            assertEquals(Optional.empty(), SequentialImage.check(m.ram().host(), w, 2));
            m.resume();
            await("progress after resume", () -> m.pagesWritten() > written + 1000, m);
            assertTrue(m.vcpuFailure().isEmpty());
        }
    }

    @Test
    void aWorkingSetInTheReservedAreaIsRefusedAndTheDefaultOneMovesAboveIt() {
        Workload inside = Workload.of(Pattern.RANDOM, 0).withWorkingSet(MIB, 4 * MIB);
        String m = assertThrows(IllegalArgumentException.class, () -> machine(1, inside, Map.of()).close()).getMessage();
        assertTrue(m.contains("start it at " + KvmAccelerator.RESERVED_BYTES + " or above"), m);
        try (Machine defaulted = machine(1, Workload.of(Pattern.RANDOM, 0), Map.of())) {
            assertEquals(KvmAccelerator.RESERVED_BYTES, defaulted.config().workload().workingSetOffset(),
                    "a default working set (all RAM) starts above the guest code and page tables");
        }
    }

    @Test
    void memslotsFollowTheFlatView() {
        try (Machine m = machine(1, Workload.of(Pattern.IDLE, 0), Map.of())) {
            KvmMemslots slots = ((KvmAccelerator) m.accelerator()).memslots();
            assertEquals(1, slots.size());
            KvmMemslot whole = slots.all().getFirst();
            assertEquals(0, whole.gpa());
            assertEquals(RAM, whole.size());
            assertFalse(whole.logging());

            MemoryRegion hole = m.memory().ioRegion("hole", PAGE, new CountingIo());
            m.systemMemory().root().addSubregionOverlap(8 * MIB, hole, 1);
            List<KvmMemslot> split = slots.all();
            assertEquals(2, split.size());
            assertTrue(whole.removed());
            assertEquals(List.of(0L, 8 * MIB + PAGE), split.stream().map(KvmMemslot::gpa).sorted().toList());

            m.memory().globalDirtyLogStart();
            assertTrue(slots.all().stream().allMatch(KvmMemslot::logging));
            m.systemMemory().root().removeSubregion(hole);
            assertEquals(1, slots.size());
            assertTrue(slots.all().getFirst().logging(), "a slot created while logging logs from the start");
            m.memory().globalDirtyLogStop();
            assertFalse(slots.all().getFirst().logging());
        }
    }

    @org.junit.jupiter.params.ParameterizedTest
    @org.junit.jupiter.params.provider.ValueSource(ints = {1, 2, 64})
    void accessesToAnIoRegionReachItsHandler(int writeSize) throws Exception {
        Workload w = new Workload(Pattern.SEQUENTIAL, KvmAccelerator.RESERVED_BYTES, 2 * MIB, 0, writeSize, 1, 1, 1);
        try (Machine m = machine(1, w, Map.of())) {
            CountingIo io = new CountingIo();
            m.systemMemory().root().addSubregionOverlap(3 * MIB, m.memory().ioRegion("mmio", PAGE, io), 1);
            m.start();
            await("the guest to touch the I/O page", () -> io.writes.get() > 2, m);
            m.pause();
            assertTrue(io.reads.get() > 0, "the counter increment reads the page first");
        }
    }

    @Test
    void pagesDirtiedInADeletedSlotAreReportedBeforeItGoes() throws Exception {
        Workload w = sequential();
        // Without manual protect KVM_GET_DIRTY_LOG is the only record of the writes.
        try (Machine m = machine(1, w, Map.of("manual-dirty-log-protect", "off")); Arena arena = Arena.ofConfined()) {
            m.start();
            await("the guest to run", () -> m.pagesWritten() > 1000, m);
            m.pause();
            m.memory().globalDirtyLogStart();
            MemorySegment before = arena.allocate(RAM, PAGE).copyFrom(m.ram().host());
            m.resume();
            long from = m.pagesWritten();
            await("more writes", () -> m.pagesWritten() > from + 3000, m);
            m.pause();
            // Splitting RAM deletes the logging slot: its log must land in the RAM block.
            m.systemMemory().root().addSubregionOverlap(30 * MIB, m.memory().ioRegion("late", PAGE, new CountingIo()), 1);
            DirtyBitmap dirty = m.ram().bitmap(DirtyClient.MIGRATION);
            long changed = 0;
            for (long p = 0; p < RAM / PAGE; p++) {
                if (before.asSlice(p * PAGE, PAGE).mismatch(m.ram().host().asSlice(p * PAGE, PAGE)) != -1) {
                    changed++;
                    assertTrue(dirty.get(p), "page " + p + " was written but not reported");
                }
            }
            assertTrue(changed >= 3000, "the guest wrote " + changed + " pages");
        }
    }

    @Test
    void savedStateContinuesOnAnotherMachine() throws Exception {
        Workload w = sequential();
        try (Machine a = machine(1, w, Map.of()); Machine b = machine(1, w, Map.of())) {
            a.start();
            await("the guest to run", () -> a.pagesWritten() > 5000, a);
            a.pause();
            byte[] state = a.vcpu(0).saveState();
            long progress = KvmRegs.fromBytes(java.util.Arrays.copyOfRange(state, 8, 8 + KvmRegs.BYTES)).r15();
            assertEquals(a.pagesWritten(), progress);
            b.ram().host().copyFrom(a.ram().host());
            b.vcpu(0).loadState(state);
            b.start();
            await("the copy to run", () -> b.pagesWritten() > 5000, b);
            b.pause();
            assertEquals(Optional.empty(), SequentialImage.check(b.ram().host(), w, 1));
            long[] steps = SequentialImage.steps(b.ram().host(), w, 1);
            long slicePages = w.workingSetSize(RAM) / PAGE;
            assertEquals((progress + b.pagesWritten()) % (256 * slicePages), steps[0],
                    "the copy picked up exactly where the original stopped");
        }
    }

    /** An I/O region that counts accesses and ignores them. */
    static final class CountingIo implements IoHandler {
        final AtomicLong reads = new AtomicLong();
        final AtomicLong writes = new AtomicLong();

        @Override
        public long read(long offset, int size) {
            reads.incrementAndGet();
            return 0;
        }

        @Override
        public void write(long offset, long value, int size) {
            writes.incrementAndGet();
        }
    }
}
