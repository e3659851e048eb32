package dev.ferry.vhost;

import dev.ferry.api.Device;
import dev.ferry.api.Options;
import dev.ferry.machine.Machine;
import dev.ferry.machine.MachineConfig;
import dev.ferry.machine.soft.SoftAcceleratorProvider;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.MemfdRamBlock;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import dev.ferry.vmstate.VMStateException;
import dev.ferry.vmstate.VMStateInput;
import dev.ferry.vmstate.VMStateLoader;
import dev.ferry.vmstate.VMStateSaver;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * vhost devices on a soft-accelerated machine with an idle guest: whatever changes in guest RAM
 * is the backends' DMA, and every changed page must be reported by the vhost log (the reference
 * model is a copy of RAM taken when logging started).
 */
class VhostDeviceTest {

    private static final long MIB = 1L << 20;
    private static final Workload IDLE = new Workload(Pattern.IDLE, 0, 0, 0, 4096, 0.1, 0.9, 1);

    /** A device to plug: its kind and options. */
    private record Spec(VhostDevice.Kind kind, Map<String, String> options) {
        static Spec of(VhostDevice.Kind kind, String... kv) {
            Map<String, String> m = new LinkedHashMap<>();
            for (int i = 0; i < kv.length; i += 2) {
                m.put(kv[i], kv[i + 1]);
            }
            return new Spec(kind, m);
        }

        long bytes() {
            return kind.guestMemory(VhostOptions.parse(Options.of(options), kind.defaultBackend()));
        }
    }

    /** A paused machine with the devices plugged and booted. */
    private static Machine machine(long ram, Spec... specs) {
        return machine(ram, true, specs);
    }

    /** A paused machine with the devices plugged, booted or (as on a migration destination) not. */
    private static Machine machine(long ram, boolean boot, Spec... specs) {
        long device = 0;
        for (Spec s : specs) {
            device += s.bytes();
        }
        Machine m = Machine.create(new MachineConfig(ram, 1, IDLE, Map.of(), false, device),
                new SoftAcceleratorProvider());
        int n = 0;
        for (Spec s : specs) {
            Device d = VhostDevice.create(s.kind(), s.kind().deviceName() + n++,
                    m.deviceContext(Options.of(s.options()), m.allocateDeviceMemory(s.bytes())));
            m.plug(d);
            if (boot) {
                d.boot();
            }
        }
        return m;
    }

    /**
     * A migration in miniature: a copy of RAM stands for the destination, taken whole when
     * logging starts (the bulk stage); each sync sends the pages reported since the previous one.
     * A DMA write that the log misses leaves the copy behind RAM for good, even on a page that
     * was sent before, so {@link #lost()} finds it.
     */
    private static final class Watch implements AutoCloseable {
        final Machine machine;
        final Arena arena = Arena.ofConfined();
        final MemorySegment destination;
        final DirtyBitmap reported;
        long sent;

        Watch(Machine machine) {
            this.machine = machine;
            machine.memory().globalDirtyLogStart();
            MemfdRamBlock ram = machine.ram();
            destination = arena.allocate(ram.size(), 4096);
            destination.copyFrom(ram.host());
            reported = new DirtyBitmap(ram.pages());
        }

        void sync() {
            machine.memory().globalDirtyLogSync(false);
            machine.ram().syncDirtyBitmap(reported);
            MemorySegment ram = machine.ram().host();
            for (long p = reported.nextSetBit(0); p >= 0; p = reported.nextSetBit(p + 1)) {
                reported.testAndClear(p);
                MemorySegment.copy(ram, p * 4096, destination, p * 4096, 4096);
                sent++;
            }
        }

        /** Syncs every {@code periodMs} for {@code ms}. */
        void run(long ms, long periodMs) throws InterruptedException {
            long end = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(ms);
            while (System.nanoTime() < end) {
                Thread.sleep(periodMs);
                sync();
            }
        }

        /** @return pages whose latest write never reached the destination */
        long lost() {
            MemorySegment ram = machine.ram().host();
            long lost = 0;
            for (long p = 0; p < machine.ram().pages(); p++) {
                if (MemorySegment.mismatch(ram, p * 4096, p * 4096 + 4096, destination, p * 4096, p * 4096 + 4096) >= 0) {
                    lost++;
                }
            }
            return lost;
        }

        @Override
        public void close() {
            arena.close();
        }
    }

    private static List<VhostDev> devs(Machine m) {
        List<VhostDev> all = new ArrayList<>();
        for (Device d : m.devices()) {
            all.addAll(((VhostDevice) d).devs());
        }
        return all;
    }

    @ParameterizedTest(name = "log-scan {0}, net backend {1}")
    @CsvSource({"elected, kernel", "every-dev, kernel", "elected, user"})
    void everyPageWrittenByDmaIsReported(String scan, String netBackend) throws Exception {
        try (Machine m = machine(64 * MIB,
                Spec.of(VhostDevice.Kind.NET, "queues", "4", "rate", "40", "log-scan", scan, "backend", netBackend),
                Spec.of(VhostDevice.Kind.BLK, "queues", "2", "rate", "20", "log-scan", scan, "pattern", "sequential"));
             Watch w = new Watch(m)) {
            m.start();
            w.run(400, 20);
            m.pause(); // stops the backends: nothing is written after this
            w.sync();
            assertTrue(w.sent > 200, "the backends wrote guest memory: " + w.sent + " pages sent");
            assertEquals(0, w.lost(), "pages written by DMA and never reported");
            long dma = m.devices().stream().mapToLong(d -> d.statistics().get("dma-bytes")).sum();
            assertTrue(dma >= 200 * 4096, "DMA statistics count what was written: " + dma);
        }
    }

    @Test
    void withoutTheLogPagesWrittenByDmaAreLost() throws Exception {
        try (Machine m = machine(64 * MIB, Spec.of(VhostDevice.Kind.NET, "queues", "2", "rate", "40", "log", "off"));
             Watch w = new Watch(m)) {
            m.start();
            w.run(200, 20);
            m.pause();
            w.sync();
            assertEquals(0, w.sent, "nothing is reported with log=off");
            assertTrue(w.lost() > 20, "with log=off DMA pages are missed: " + w.lost());
        }
    }

    @ParameterizedTest(name = "log-scan {0}")
    @CsvSource({"elected", "every-dev"})
    void memorySectionsAreScannedOncePerBackendTypeWhenElected(String scan) throws Exception {
        try (Machine m = machine(64 * MIB,
                Spec.of(VhostDevice.Kind.NET, "queues", "8", "rate", "0", "log-scan", scan),
                Spec.of(VhostDevice.Kind.BLK, "rate", "0", "log-scan", scan),
                Spec.of(VhostDevice.Kind.BLK, "rate", "0", "log-scan", scan));
             Watch w = new Watch(m)) {
            int syncs = 5;
            for (int i = 0; i < syncs; i++) {
                w.sync();
            }
            List<VhostDev> devs = devs(m);
            for (VhostBackendType type : VhostBackendType.values()) {
                List<VhostDev> ofType = devs.stream().filter(d -> d.backendType() == type).toList();
                long scanning = ofType.stream().filter(d -> d.sectionScans() > 0).count();
                long scans = ofType.stream().mapToLong(VhostDev::sectionScans).sum();
                if (scan.equals("elected")) {
                    assertEquals(1, scanning, type + ": one logger scans memory sections");
                    assertEquals(syncs, scans, type + ": once per sync");
                } else {
                    assertEquals(ofType.size(), scanning, type + ": every dev scans");
                }
                assertTrue(ofType.stream().allMatch(d -> d.syncs() == syncs), type + ": every dev syncs its used rings");
            }
            assertEquals(10, devs.size(), "8 queue pairs are 8 vhost devs, each blk device one");
        }
    }

    @Test
    void theLoggerHandsOverWhenItsDeviceIsUnpluggedWhileDmaRuns() throws Exception {
        try (Machine m = machine(64 * MIB,
                Spec.of(VhostDevice.Kind.NET, "queues", "4", "rate", "60"),
                Spec.of(VhostDevice.Kind.NET, "queues", "4", "rate", "60"));
             Watch w = new Watch(m)) {
            m.start();
            w.run(150, 20);
            Device first = m.devices().getFirst();
            List<VhostDev> firstDevs = ((VhostDevice) first).devs();
            assertTrue(firstDevs.stream().anyMatch(VhostDev::scansSections), "the first device's first dev logs");
            m.unplug(first); // while the second device's backends go on writing
            VhostDev logger = devs(m).stream().filter(VhostDev::scansSections).findFirst().orElseThrow(
                    () -> new AssertionError("no dev took over the memory-section scan"));
            assertTrue(((VhostDevice) m.devices().getFirst()).devs().contains(logger));
            w.run(150, 20);
            m.pause();
            w.sync();
            assertTrue(w.sent > 100, w.sent + " pages sent");
            assertEquals(0, w.lost(), "DMA pages lost across the hand-over");
            assertTrue(first.statistics().get("dma-bytes") > 0, "the unplugged device wrote before it left");
        }
    }

    @Test
    void theLastDeviceUnpluggedWhileLoggingLeavesNoMarkBehind() throws Exception {
        try (Machine m = machine(64 * MIB, Spec.of(VhostDevice.Kind.BLK, "queues", "2", "rate", "80"));
             Watch w = new Watch(m)) {
            m.start();
            w.run(100, 20);
            Thread.sleep(100); // marks pile up in the log after the last sync
            m.unplug(m.devices().getFirst()); // the log's last reference goes with it
            w.sync();
            assertTrue(w.sent > 20, w.sent + " pages sent");
            assertEquals(0, w.lost(), "DMA pages lost when the last vhost device left");
        }
    }

    @Test
    void theLogGrowsWithGuestMemory() throws Exception {
        try (Machine m = machine(64 * MIB, Spec.of(VhostDevice.Kind.NET, "queues", "2", "rate", "40"));
             Watch w = new Watch(m)) {
            m.start();
            w.run(100, 20);
            VhostDev dev = devs(m).getFirst();
            long before = dev.log().coverage();
            MemfdRamBlock extra = m.memory().allocateRam("extra", 64 * MIB);
            m.systemMemory().root().addSubregion(64 * MIB, m.memory().ramRegion("extra", extra));
            assertTrue(dev.log().coverage() >= 128 * MIB, "the log covers the new RAM: " + dev.log().coverage()
                    + " bytes, was " + before);
            assertTrue(dev.resizes() > 0);
            assertEquals(1, devs(m).stream().map(VhostDev::log).distinct().count(), "the devs share one log again");
            w.run(100, 20);
            m.pause();
            w.sync();
            assertEquals(0, w.lost(), "DMA pages lost across the resize");
        }
    }

    /** Saves a device's state as the source does. */
    private static byte[] save(Device d) {
        return VMStateSaver.save(d.vmstate(), d.vmstate().description().name(), 0).bytes();
    }

    /** Loads it as a batched destination does: read and check, then apply in one transaction. */
    private static void load(Machine m, Device d, byte[] state) throws IOException {
        VMStateLoader.Pending p = VMStateLoader.read(VMStateInput.of(state), d.vmstate(), 1);
        m.memory().begin();
        try {
            p.apply();
        } finally {
            m.memory().commit();
        }
    }

    @Test
    void stateMovesToAnUnbootedDeviceWhosePostLoadMapsTheBarAndChecksTheRings() throws Exception {
        Spec net = Spec.of(VhostDevice.Kind.NET, "queues", "2", "rate", "40");
        try (Machine src = machine(64 * MIB, net); Machine dst = machine(64 * MIB, false, net)) {
            VhostDevice s = (VhostDevice) src.devices().getFirst();
            VhostDevice d = (VhostDevice) dst.devices().getFirst();
            assertTrue(s.mappedAt() >= 64 * MIB, "the firmware mapped BAR 4 above RAM");
            assertEquals(-1, d.mappedAt(), "a destination's device waits for its state");
            src.start();
            Thread.sleep(150);
            src.pause();
            assertTrue(s.statistics().get("used-writes") > 0);
            byte[] state = save(s);
            // The RAM section has come: guest memory, used rings included, is the source's.
            MemorySegment.copy(src.ram().host(), 0, dst.ram().host(), 0, src.ram().size());
            long commits = dst.memory().topologyCommits();
            load(dst, d, state);
            assertEquals(s.mappedAt(), d.mappedAt());
            assertEquals(commits + 1, dst.memory().topologyCommits(), "BAR and notifiers in one commit");
            assertTrue(dst.systemMemory().flatView().sections().stream()
                    .anyMatch(x -> x.region().equals("vhost-net0.qp1.notify1")), "the notifiers are mapped");
            assertArrayEquals(state, save(d), "the destination's device holds the source's state");
        }
    }

    @Test
    void aStateThatDisagreesWithGuestMemoryOrTheConfigurationIsRefused() throws Exception {
        Spec net = Spec.of(VhostDevice.Kind.NET, "queues", "2", "rate", "40");
        try (Machine src = machine(64 * MIB, net); Machine dst = machine(64 * MIB, false, net);
             Machine other = machine(64 * MIB, false, Spec.of(VhostDevice.Kind.NET, "queues", "1"))) {
            src.start();
            Thread.sleep(150);
            src.pause();
            byte[] state = save(src.devices().getFirst());
            // Guest memory without the used rings' latest writes: a lost page.
            VMStateLoader.Pending p = VMStateLoader.read(VMStateInput.of(state), dst.devices().getFirst().vmstate(), 1);
            VMStateException e = assertThrows(VMStateException.class, p::apply);
            assertTrue(e.getMessage().contains("in guest memory") && e.getMessage().contains("in the device state"),
                    e.getMessage());
            VMStateException mismatch = assertThrows(VMStateException.class,
                    () -> VMStateLoader.read(VMStateInput.of(state), other.devices().getFirst().vmstate(), 1));
            assertTrue(mismatch.getMessage().contains("vhost-net.ndevs is 2 in the stream and 1 here"),
                    mismatch.getMessage());
        }
    }
}
