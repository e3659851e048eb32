package dev.ferry.machine.soft;

import dev.ferry.api.DirtyClient;
import dev.ferry.machine.Guests;
import dev.ferry.machine.Guests.Tracked;
import dev.ferry.machine.Machine;
import dev.ferry.machine.ShadowCopy;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.memory.IoHandler;
import dev.ferry.memory.MemfdRamBlock;
import dev.ferry.memory.MemoryRegion;
import dev.ferry.memory.MemoryTestAccess;
import dev.ferry.memory.MemorySystem;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;

import static dev.ferry.machine.Guests.MIB;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The property the soft tracker must never break: every page the guest changed is reported by
 * a sync. Checked as migration sees it: a shadow copy taken whole at logging start, then
 * updated with only the pages each sync reports, must equal RAM after the guest stops and a
 * final sync. Randomized with a fixed seed (override with -Dferry.test.seed=N); the seed is in
 * every failure message.
 */
class SoftTrackerNoFalseNegativesTest {

    private static final long SEED = Long.getLong("ferry.test.seed", 0x5EEDF00DL);
    private static final long RAM = 16 * MIB;

    static Stream<Arguments> patternsAndVcpus() {
        List<Arguments> out = new ArrayList<>();
        // The patterns that write (an idle guest has nothing to report).
        for (Pattern p : List.of(Pattern.SEQUENTIAL, Pattern.RANDOM, Pattern.HOTCOLD)) {
            for (int vcpus : new int[]{1, 3}) {
                out.add(Arguments.of(p, vcpus));
            }
        }
        return out.stream();
    }

    private static Random random(Object... salt) {
        return new Random(SEED * 31 + java.util.Arrays.deepHashCode(salt));
    }

    private static String seedInfo(Object... what) {
        return " (seed " + SEED + ", " + java.util.Arrays.toString(what) + ")";
    }

    @ParameterizedTest(name = "{0}, {1} vCPU(s)")
    @MethodSource("patternsAndVcpus")
    void everyChangedPageIsReported(Pattern pattern, int vcpus) {
        Random rnd = random(pattern, vcpus);
        int writeSize = new int[]{1, 9, 512, 4096}[rnd.nextInt(4)];
        try (Tracked g = Guests.softTracked(RAM, vcpus, Guests.workload(pattern, 0, writeSize, rnd.nextLong()))) {
            Machine m = g.machine();
            m.start();
            Guests.awaitWrites(m, 1000); // the guest runs before migration starts, as it would
            m.memory().globalDirtyLogStart();
            try (ShadowCopy shadow = new ShadowCopy(m.memory())) {
                runSyncs(m, shadow, rnd, 200, null);
                m.pause();
                shadow.sync(true);
                assertNull(shadow.differences(), "pages changed but never reported" + seedInfo(pattern, vcpus, writeSize));
                assertTrue(shadow.pagesCopied() > 0, "the syncs reported nothing: the check proved nothing");
            } finally {
                m.memory().globalDirtyLogStop();
            }
            assertTrue(m.vcpuFailure().isEmpty(), () -> "a vCPU died: " + m.vcpuFailure().get());
        }
    }

    /** Two migrations in a row: logging stopped and restarted on the same machine. */
    @Test
    void secondMigrationOnTheSameMachineIsAlsoComplete() {
        Random rnd = random("twice");
        try (Tracked g = Guests.softTracked(RAM, 2, Guests.workload(Pattern.RANDOM, 0, 64, rnd.nextLong()))) {
            Machine m = g.machine();
            m.start();
            for (int round = 0; round < 2; round++) {
                m.resume();
                m.memory().globalDirtyLogStart();
                try (ShadowCopy shadow = new ShadowCopy(m.memory())) {
                    runSyncs(m, shadow, rnd, 150, null);
                    m.pause();
                    shadow.sync(true);
                    assertNull(shadow.differences(), "round " + round + seedInfo("twice"));
                } finally {
                    m.memory().globalDirtyLogStop();
                }
            }
        }
    }

    /** The oracle itself: a write that bypasses tracking is caught. */
    @Test
    void aWriteNobodyReportedIsDetected() {
        try (Tracked g = Guests.softTracked(4 * MIB, 1, Guests.workload(Pattern.SEQUENTIAL, 0, 1, 1))) {
            Machine m = g.machine();
            m.start();
            m.memory().globalDirtyLogStart();
            try (ShadowCopy shadow = new ShadowCopy(m.memory())) {
                shadow.sync(false);
                m.pause();
                shadow.sync(true);
                assertNull(shadow.differences());
                // A DMA-like write straight to host memory: no tracker sees it.
                m.ram().host().set(ValueLayout.JAVA_BYTE, 777 * 4096L + 5, (byte) 0x5A);
                shadow.sync(true);
                String diff = shadow.differences();
                assertNotNull(diff);
                assertTrue(diff.contains("[777]"), diff);
            } finally {
                m.memory().globalDirtyLogStop();
            }
        }
    }

    /**
     * Topology changes while logging: an I/O region punched into RAM at an unaligned page, an
     * alias showing an unaligned part of RAM elsewhere (moved around), a second RAM block mapped
     * and unmapped next to RAM, an extra dirty-log client toggled, and writes through the
     * address space (device emulation) landing in all of them, across section boundaries.
     */
    @ParameterizedTest(name = "{0}, {1} vCPU(s)")
    @MethodSource("patternsAndVcpus")
    void everyChangedPageIsReportedWhileTheTopologyChanges(Pattern pattern, int vcpus) {
        Random rnd = random("churn", pattern, vcpus);
        try (Tracked g = Guests.softTracked(RAM, vcpus, Guests.workload(pattern, 0, 4096, rnd.nextLong()));
             Topology topo = new Topology(g.machine())) {
            Machine m = g.machine();
            m.start();
            Guests.awaitWrites(m, 1000);
            m.memory().globalDirtyLogStart();
            try (ShadowCopy shadow = new ShadowCopy(m.memory());
                 DeviceWriter dma = new DeviceWriter(m, 0, RAM, rnd.nextLong())) {
                runSyncs(m, shadow, rnd, 200, topo);
                while (topo.ops <= 40) {
                    runSyncs(m, shadow, rnd, 0, topo);
                }
                m.pause();
                dma.stop(); // devices stop with the vCPUs (vm_stop)
                topo.step(rnd); // a last change and device write with the vCPUs stopped
                shadow.sync(true);
                assertNull(shadow.differences(), "pages changed but never reported" + seedInfo("churn", pattern, vcpus)
                        + "; topology ops " + topo.ops);
                
            } finally {
                m.memory().globalDirtyLogStop();
            }
            assertTrue(m.vcpuFailure().isEmpty(), () -> "a vCPU died: " + m.vcpuFailure().get());
        }
    }

    /**
     * Memslots replaced while logging is off (the guest's memory map changes during boot, say),
     * then a migration: writes the vCPUs make through the slot they used before must be logged.
     */
    @ParameterizedTest(name = "{0}, {1} vCPU(s)")
    @MethodSource("patternsAndVcpus")
    void topologyChangedBeforeLoggingStarts(Pattern pattern, int vcpus) {
        Random rnd = random("before", pattern, vcpus);
        try (Tracked g = Guests.softTracked(RAM, vcpus, Guests.workload(pattern, 0, 4096, rnd.nextLong()));
             Topology topo = new Topology(g.machine())) {
            Machine m = g.machine();
            m.start();
            Guests.awaitWrites(m, 1000);
            topo.setOverlay(true);
            Guests.awaitWrites(m, 1000);
            topo.setOverlay(false);
            Guests.awaitWrites(m, 1000);
            m.memory().globalDirtyLogStart();
            try (ShadowCopy shadow = new ShadowCopy(m.memory())) {
                runSyncs(m, shadow, rnd, 150, null);
                m.pause();
                shadow.sync(true);
                assertNull(shadow.differences(), "pages changed but never reported" + seedInfo("before", pattern, vcpus));
            } finally {
                m.memory().globalDirtyLogStop();
            }
        }
    }

    /** Writes through the address space alone (the guest does not run), across sections. */
    @Test
    void addressSpaceWritesAreReported() {
        Random rnd = random("as-writes");
        try (Tracked g = Guests.softTracked(RAM, 1, Guests.workload(Pattern.RANDOM, 0, 4096, 1));
             Topology topo = new Topology(g.machine())) {
            Machine m = g.machine();
            topo.setExtra(true);
            topo.setAlias(true);
            m.memory().globalDirtyLogStart();
            try (ShadowCopy shadow = new ShadowCopy(m.memory())) {
                long copied = 0;
                for (int i = 0; i < 200; i++) {
                    topo.deviceWrite(rnd);
                    if (rnd.nextInt(10) == 0) {
                        copied += shadow.sync(false);
                    }
                }
                // One write straddling pc.ram and the block mapped right after it.
                topo.write(RAM - 100, 300, rnd);
                shadow.sync(true);
                assertNull(shadow.differences(), seedInfo("as-writes"));
                assertTrue(copied + shadow.pagesCopied() > 0);
                MemfdRamBlock extra = topo.extraBlock;
                assertEquals(0, extra.bitmap(DirtyClient.MIGRATION).count(), "drained");
            } finally {
                m.memory().globalDirtyLogStop();
            }
        }
    }

    /**
     * A device thread writing guest memory while the migration syncs and drains the bitmaps on
     * another thread (an I/O thread doing DMA): its marks must survive the drain. Each round
     * writes every page once and is then checked, so a mark lost to a racing drain is never
     * healed by a later write of the same page; many short rounds make marks and drains meet.
     */
    @Test
    void concurrentDeviceWritesAreReported() throws InterruptedException {
        long ram = 4 * MIB;
        int pages = (int) (ram / 4096);
        try (Tracked g = Guests.softTracked(ram, 1, Guests.workload(Pattern.RANDOM, 0, 4096, 1))) {
            Machine m = g.machine();
            m.memory().globalDirtyLogStart();
            try (ShadowCopy shadow = new ShadowCopy(m.memory())) {
                long end = System.nanoTime() + 1_000_000_000L;
                int rounds = 0;
                while (rounds < 20 || System.nanoTime() < end) {
                    int round = ++rounds;
                    Thread writer = Thread.ofPlatform().name("device-writer").start(() -> {
                        MemorySegment one = MemorySegment.ofArray(new byte[]{(byte) round});
                        for (int p = 0; p < pages; p++) {
                            m.systemMemory().write(p * 4096L + round % 4096, one);
                        }
                    });
                    while (writer.isAlive()) {
                        shadow.sync(false);
                    }
                    writer.join();
                    shadow.sync(false);
                    String diff = shadow.differences();
                    if (diff != null) {
                        fail("round " + round + ": device writes lost: " + diff);
                    }
                }
            } finally {
                m.memory().globalDirtyLogStop();
            }
        }
    }

    /** A thread writing random bytes through the address space into {@code [from, from + size)}. */
    static final class DeviceWriter implements AutoCloseable {

        private final Thread thread;
        private volatile boolean stop;
        private volatile Throwable failure;
        volatile long writes;

        DeviceWriter(Machine m, long from, long size, long seed) {
            thread = Thread.ofPlatform().name("device-writer").daemon().start(() -> {
                Random r = new Random(seed);
                try {
                    while (!stop) {
                        int length = 1 + r.nextInt(r.nextBoolean() ? 16 : 9000);
                        long at = from + r.nextLong(size - length + 1);
                        byte[] data = new byte[length];
                        r.nextBytes(data);
                        m.systemMemory().write(at, MemorySegment.ofArray(data));
                        writes++;
                    }
                } catch (Throwable e) {
                    failure = e;
                }
            });
        }

        /** Stops the thread and waits for it; fails if it failed. */
        void stop() {
            stop = true;
            try {
                thread.join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new AssertionError(e);
            }
            if (failure != null) {
                throw new AssertionError("device writer failed", failure);
            }
        }

        @Override
        public void close() {
            stop();
        }
    }

    /** Syncs at random short intervals for about {@code millis} ms, changing the topology between if asked. */
    private static void runSyncs(Machine m, ShadowCopy shadow, Random rnd, long millis, Topology topo) {
        long end = System.nanoTime() + millis * 1_000_000L;
        do {
            if (topo != null) {
                for (int k = rnd.nextInt(3); k > 0; k--) {
                    topo.step(rnd);
                }
            }
            Guests.sleep(rnd.nextInt(4));
            shadow.sync(false);
        } while (System.nanoTime() < end);
    }

    /** The pieces of memory map a test moves around, around the machine's pc.ram at 0. */
    static final class Topology implements AutoCloseable {

        static final long PAGE = 4096;
        /** An I/O hole over RAM pages [1027, 1027 + 805): neither start nor end on a 64-page word. */
        static final long OVERLAY_AT = 1027 * PAGE;
        static final long OVERLAY_SIZE = 805 * PAGE;
        /** The alias shows RAM from an unaligned page, at 1 GiB. */
        static final long ALIAS_AT = 1L << 30;
        static final long ALIAS_SIZE = 1531 * PAGE;
        static final long EXTRA_SIZE = 2 * MIB;

        final Machine machine;
        final MemorySystem memory;
        final MemoryRegion root;
        final MemoryRegion overlay;
        final MemoryRegion alias;
        final MemfdRamBlock extraBlock;
        final MemoryRegion extra;
        final long extraAt;
        boolean overlayOn;
        boolean aliasOn;
        boolean extraOn;
        boolean vgaOn;
        long aliasOffset = 517 * PAGE;
        int ops;

        Topology(Machine machine) {
            this.machine = machine;
            this.memory = machine.memory();
            this.root = machine.systemMemory().root();
            this.overlay = memory.ioRegion("hole", OVERLAY_SIZE, new IoHandler() {
                @Override
                public long read(long offset, int size) {
                    return 0xFF;
                }

                @Override
                public void write(long offset, long value, int size) {
                }
            });
            // An alias of pc.ram itself: aliasing the system container (size Long.MAX_VALUE) at a
            // positive address overflows FlatView's clipping and renders nothing.
            MemoryRegion pcRam = MemoryTestAccess.subregion(root, Machine.RAM_NAME);
            this.alias = memory.alias("pc.ram-alias", pcRam, aliasOffset, ALIAS_SIZE);
            this.extraBlock = memory.allocateRam("extra.ram", EXTRA_SIZE);
            this.extra = memory.ramRegion("extra.ram", extraBlock);
            this.extraAt = machine.ram().size(); // right after pc.ram: writes can straddle the two
        }

        void setOverlay(boolean on) {
            if (on != overlayOn) {
                if (on) {
                    root.addSubregionOverlap(OVERLAY_AT, overlay, 1);
                } else {
                    root.removeSubregion(overlay);
                }
                overlayOn = on;
                ops++;
            }
        }

        void setAlias(boolean on) {
            if (on != aliasOn) {
                if (on) {
                    root.addSubregion(ALIAS_AT, alias);
                } else {
                    root.removeSubregion(alias);
                }
                aliasOn = on;
                ops++;
            }
        }

        void setExtra(boolean on) {
            if (on != extraOn) {
                if (on) {
                    root.addSubregion(extraAt, extra);
                } else {
                    root.removeSubregion(extra);
                }
                extraOn = on;
                ops++;
            }
        }

        /** One random change or device write. */
        void step(Random rnd) {
            switch (rnd.nextInt(7)) {
                case 0 -> setOverlay(!overlayOn);
                case 1 -> setAlias(!aliasOn);
                case 2 -> setExtra(!extraOn);
                case 3 -> {
                    // Move the alias window: a page offset that keeps it within RAM.
                    long maxPage = (machine.ram().size() - ALIAS_SIZE) / PAGE;
                    aliasOffset = (1 + rnd.nextLong(maxPage)) * PAGE;
                    alias.setAliasOffset(aliasOffset);
                    ops++;
                }
                case 4 -> {
                    // Several changes, one transaction, one listener pass.
                    memory.transaction(() -> {
                        setOverlay(!overlayOn);
                        setAlias(!aliasOn);
                    });
                }
                case 5 -> {
                    vgaOn = !vgaOn;
                    extra.setLog(DirtyClient.VGA, vgaOn);
                    ops++;
                }
                default -> deviceWrite(rnd);
            }
        }

        /** A write through the address space somewhere mapped, up to a few pages long. */
        void deviceWrite(Random rnd) {
            List<long[]> ranges = new ArrayList<>();
            ranges.add(new long[]{0, machine.ram().size() + (extraOn ? EXTRA_SIZE : 0)});
            if (aliasOn) {
                ranges.add(new long[]{ALIAS_AT, ALIAS_SIZE});
            }
            long[] r = ranges.get(rnd.nextInt(ranges.size()));
            long length = 1 + rnd.nextInt(3 * 4096);
            long at = r[0] + rnd.nextLong(r[1]);
            length = Math.min(length, r[0] + r[1] - at);
            write(at, length, rnd);
            ops++;
        }

        void write(long at, long length, Random rnd) {
            byte[] data = new byte[(int) length];
            rnd.nextBytes(data);
            machine.systemMemory().write(at, MemorySegment.ofArray(data));
        }

        @Override
        public void close() {
            // The machine's close releases the regions and the block.
        }
    }
}
