package dev.ferry.kvm.dirtylog;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.abort;

import dev.ferry.api.Options;
import dev.ferry.kvm.KvmAccelerator;
import dev.ferry.kvm.KvmAcceleratorProvider;
import dev.ferry.kvm.KvmTestSupport;
import dev.ferry.machine.Machine;
import dev.ferry.machine.MachineConfig;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.IoHandler;
import dev.ferry.memory.MemoryRegion;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * kvm-dirtylog on real KVM, with and without manual protect: a machine runs a guest, and at every
 * round (vCPUs paused, so the image is still) the tracker syncs, the test clears the whole log as
 * a migration would before sending, and every page whose content changed since the previous round
 * must have been reported. Needs /dev/kvm: skipped elsewhere, failed with FERRY_REQUIRE_KVM=1.
 */
@Tag(KvmTestSupport.TAG)
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class KvmDirtyLogKvmTest {

    private static final long MIB = 1L << 20;
    private static final long RAM = 32 * MIB;
    private static final int PAGE = 4096;
    private static final long PAGES = RAM / PAGE;
    private static final IoHandler IGNORE = new IoHandler() {
        @Override
        public long read(long offset, int size) {
            return 0;
        }

        @Override
        public void write(long offset, long value, int size) {
        }
    };

    @BeforeEach
    void needKvm() {
        KvmTestSupport.assumeKvm();
    }

    /** A machine with the tracker registered, and the image as of the last round. */
    private static final class Rig implements AutoCloseable {
        final Machine machine;
        final KvmDirtyLogTracker tracker;
        final Arena arena = Arena.ofConfined();
        final MemorySegment shadow = arena.allocate(RAM, PAGE);
        long reportedTotal;

        Rig(Workload workload, int vcpus, String manualProtect) {
            KvmDirtyLogProvider provider = new KvmDirtyLogProvider();
            Options options = Options.of(Map.of("manual-protect", manualProtect));
            Map<String, String> properties = provider.requirements(options).properties();
            Machine m;
            try {
                m = Machine.create(MachineConfig.of(RAM, vcpus, workload).withAcceleratorProperties(properties)
                        .withPreallocate(false), new KvmAcceleratorProvider());
            } catch (IllegalArgumentException e) {
                if (e.getMessage().contains("lacks KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2")) {
                    abort("this kernel has no manual dirty-log protection: " + e.getMessage());
                }
                throw e;
            }
            machine = m;
            tracker = (KvmDirtyLogTracker) provider.create(machine.context(options));
            assertEquals("on".equals(manualProtect), tracker.manualProtect());
            machine.systemMemory().registerListener(tracker);
        }

        /** Starts logging and the guest, with a clean log and the current image as reference. */
        void start() {
            machine.memory().globalDirtyLogStart();
            syncAndClear(); // under INITIALLY_SET this reports, then clears, everything
            shadow.copyFrom(machine.ram().host());
            machine.start();
        }

        private DirtyBitmap syncAndClear() {
            machine.memory().globalDirtyLogSync(false);
            DirtyBitmap reported = new DirtyBitmap(PAGES);
            machine.ram().syncDirtyBitmap(reported);
            machine.systemMemory().logClear(machine.ram(), 0, RAM);
            return reported;
        }

        /** Lets the guest run, then checks that every changed page was reported. @return pages changed */
        long round(long millis, Runnable whileRunning) throws InterruptedException {
            Thread.sleep(millis / 2);
            whileRunning.run();
            Thread.sleep(millis - millis / 2);
            machine.pause();
            machine.vcpuFailure().ifPresent(e -> {
                throw new AssertionError("vCPU failed", e);
            });
            DirtyBitmap reported = syncAndClear();
            reportedTotal += reported.count();
            long changed = 0;
            MemorySegment ram = machine.ram().host();
            for (long p = 0; p < PAGES; p++) {
                if (shadow.asSlice(p * PAGE, PAGE).mismatch(ram.asSlice(p * PAGE, PAGE)) != -1) {
                    changed++;
                    assertTrue(reported.get(p), "page " + p + " (gpa 0x" + Long.toHexString(p * PAGE)
                            + ") was written but not reported");
                }
            }
            shadow.copyFrom(ram);
            machine.resume();
            return changed;
        }

        @Override
        public void close() {
            machine.pause();
            machine.systemMemory().unregisterListener(tracker);
            tracker.close();
            machine.close();
            arena.close();
        }
    }

    private static Workload workload(Pattern pattern, double rateMiBps, int writeSize) {
        return new Workload(pattern, KvmAccelerator.RESERVED_BYTES, 0, rateMiBps, writeSize, 0.1, 0.9, 0x1234_5678L);
    }

    @ParameterizedTest(name = "manual-protect={0}")
    @ValueSource(strings = {"on", "off"})
    void sequentialGuestEveryWrittenPageIsReported(String manual) throws Exception {
        try (Rig rig = new Rig(workload(Pattern.SEQUENTIAL, 0, 8), 2, manual)) {
            rig.start();
            long total = 0;
            for (int round = 0; round < 5; round++) {
                total += rig.round(100, () -> { });
            }
            assertTrue(total > 0, "the guest wrote nothing");
            assertTrue(rig.tracker.statistics().get("syncs") >= 5);
            if ("on".equals(manual)) {
                assertTrue(rig.tracker.statistics().get("clears") > 0);
            }
        }
    }

    @ParameterizedTest(name = "manual-protect={0}")
    @ValueSource(strings = {"on", "off"})
    void sparseRandomWritesAreAllReported(String manual) throws Exception {
        // 20 MiB/s over 7680 pages: a few hundred scattered pages per round.
        try (Rig rig = new Rig(workload(Pattern.RANDOM, 20, 64), 1, manual)) {
            rig.start();
            long total = 0;
            for (int round = 0; round < 6; round++) {
                long changed = rig.round(50, () -> { });
                assertTrue(changed < PAGES / 2, "a sparse round changed " + changed + " pages");
                total += changed;
            }
            assertTrue(total > 0);
        }
    }

    @ParameterizedTest(name = "manual-protect={0}")
    @ValueSource(strings = {"on", "off"})
    void pagesAtSlotBoundariesAndSlotsChangingWhileLogging(String manual) throws Exception {
        try (Rig rig = new Rig(workload(Pattern.SEQUENTIAL, 0, 64), 1, manual)) {
            MemoryRegion system = rig.machine.systemMemory().root();
            // Split RAM into three slots around two one-page holes, and add a second view of it.
            MemoryRegion holeA = rig.machine.memory().ioRegion("hole-a", PAGE, IGNORE);
            MemoryRegion holeB = rig.machine.memory().ioRegion("hole-b", PAGE, IGNORE);
            system.addSubregionOverlap(5 * MIB, holeA, 1);
            system.addSubregionOverlap(17 * MIB + 3 * PAGE, holeB, 1);
            MemoryRegion ram = rig.machine.memory().ramRegion("pc.ram-view", rig.machine.ram());
            MemoryRegion view = rig.machine.memory().alias("pc.ram-high", ram, 16 * MIB, 8 * MIB);
            system.addSubregion(64 * MIB, view);
            KvmAccelerator accel = (KvmAccelerator) rig.machine.accelerator();
            assertEquals(4, accel.memslots().size());
            rig.start();
            for (int round = 0; round < 3; round++) {
                rig.round(100, () -> { });
            }
            // Slots deleted and created while the guest runs and logging is on.
            rig.round(100, () -> system.removeSubregion(holeA));
            rig.round(100, () -> system.addSubregionOverlap(9 * MIB + 7 * PAGE, holeA, 1));
            rig.round(100, () -> {
                system.removeSubregion(view);
                system.removeSubregion(holeB);
            });
            rig.round(100, () -> system.addSubregionOverlap(17 * MIB + 3 * PAGE, holeB, 1));
            for (int round = 0; round < 3; round++) {
                rig.round(100, () -> { });
            }
            assertTrue(rig.reportedTotal > 0);
        }
    }
}
