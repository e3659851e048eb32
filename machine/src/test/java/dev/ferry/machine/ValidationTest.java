package dev.ferry.machine;

import dev.ferry.machine.soft.SoftAcceleratorProvider;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

import java.util.Map;

import static dev.ferry.machine.Guests.MIB;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The messages users see for a bad workload or machine: one line, naming what is wrong. */
class ValidationTest {

    private static final Workload OK = Workload.of(Pattern.RANDOM, 10);

    private static void refused(Executable e, String... fragments) {
        IllegalArgumentException x = assertThrows(IllegalArgumentException.class, e);
        for (String f : fragments) {
            assertTrue(x.getMessage().contains(f), () -> "'" + x.getMessage() + "' lacks '" + f + "'");
        }
        assertFalse(x.getMessage().contains("\n"), "one line");
    }

    private static Workload wl(long off, long size, double rate, int writeSize, double hotFraction, double hotProb) {
        return new Workload(Pattern.HOTCOLD, off, size, rate, writeSize, hotFraction, hotProb, 1);
    }

    @Test
    void workloadParameters() {
        refused(() -> wl(-4096, 0, 1, 1, 0.1, 0.9), "working-set offset", "multiple of 4096", "-4096");
        refused(() -> wl(100, 0, 1, 1, 0.1, 0.9), "working-set offset", "100");
        refused(() -> wl(0, 4095, 1, 1, 0.1, 0.9), "working-set size", "4095");
        refused(() -> wl(0, -4096, 1, 1, 0.1, 0.9), "working-set size");
        refused(() -> wl(0, 0, -1, 1, 0.1, 0.9), "rate", "-1");
        refused(() -> wl(0, 0, Double.NaN, 1, 0.1, 0.9), "rate", "NaN");
        refused(() -> wl(0, 0, Double.POSITIVE_INFINITY, 1, 0.1, 0.9), "rate");
        refused(() -> wl(0, 0, 1, 0, 0.1, 0.9), "write size", "1 to 4096", "0");
        refused(() -> wl(0, 0, 1, 4097, 0.1, 0.9), "write size", "4097");
        refused(() -> wl(0, 0, 1, 1, 0, 0.9), "hot fraction");
        refused(() -> wl(0, 0, 1, 1, 1.5, 0.9), "hot fraction");
        refused(() -> wl(0, 0, 1, 1, 0.1, -0.1), "hot probability");
        refused(() -> wl(0, 0, 1, 1, 0.1, Double.NaN), "hot probability");
        assertThrows(NullPointerException.class, () -> new Workload(null, 0, 0, 0, 1, 0.1, 0.9, 1));
        // The edges are fine.
        wl(0, 4096, 0, 1, 1, 0);
        wl(0, 0, 0, 4096, 0.0001, 1);
    }

    @Test
    void seedZeroIsReplacedSoXorshiftMoves() {
        Workload w = new Workload(Pattern.RANDOM, 0, 0, 0, 1, 0.1, 0.9, 0);
        assertNotEquals(0, w.seed());
    }

    @Test
    void workingSetMustFitAndSplit() {
        refused(() -> OK.withWorkingSet(4 * MIB, 4 * MIB).workingSetSize(6 * MIB), "does not fit in", "6291456");
        refused(() -> OK.withWorkingSet(8 * MIB, 0).workingSetSize(8 * MIB), "does not fit");
        assertEquals(6 * MIB, OK.withWorkingSet(2 * MIB, 0).workingSetSize(8 * MIB));
        refused(() -> OK.withWorkingSet(0, 3 * 4096).slice(8 * MIB, 0, 4), "3 pages", "too small for 4 vCPUs");
        // Slices tile the working set; the last takes the remainder.
        Workload w = OK.withWorkingSet(5 * 4096, 10 * 4096);
        assertArrayEquals(new long[]{5, 3}, w.slice(MIB, 0, 3));
        assertArrayEquals(new long[]{8, 3}, w.slice(MIB, 1, 3));
        assertArrayEquals(new long[]{11, 4}, w.slice(MIB, 2, 3));
        assertEquals(10 * 256.0 / 4, OK.pagesPerSecondPerVcpu(4), 1e-9);
        assertEquals(0, Workload.of(Pattern.RANDOM, 0).pagesPerSecondPerVcpu(2));
    }

    @Test
    void patternNames() {
        assertEquals(Pattern.HOTCOLD, Pattern.parse(" HotCold "));
        assertEquals(Pattern.SEQUENTIAL, Pattern.parse("sequential"));
        assertEquals("random", Pattern.RANDOM.toString());
        String[] names = java.util.Arrays.stream(Pattern.values()).map(Pattern::toString).toArray(String[]::new);
        refused(() -> Pattern.parse("zigzag"), "unknown workload 'zigzag'");
        refused(() -> Pattern.parse("zigzag"), names); // the message lists every pattern
    }

    @Test
    void machineConfig() {
        refused(() -> MachineConfig.of(3 * MIB, 1, OK), "memory size", "multiple of 2 MiB", "3145728");
        refused(() -> MachineConfig.of(0, 1, OK), "memory size");
        refused(() -> MachineConfig.of(-2 * MIB, 1, OK), "memory size");
        refused(() -> MachineConfig.of(2 * MIB, 0, OK), "vCPU count must be 1 to 64, got 0");
        refused(() -> MachineConfig.of(2 * MIB, 65, OK), "vCPU count", "65");
        refused(() -> MachineConfig.of(2 * MIB, 1, OK.withWorkingSet(0, 4 * MIB)), "does not fit");
        assertThrows(NullPointerException.class, () -> MachineConfig.of(2 * MIB, 1, null));
        MachineConfig c = MachineConfig.of(2 * MIB, 64, OK);
        assertTrue(c.preallocate());
        assertFalse(c.withPreallocate(false).preallocate());
        Map<String, String> props = new java.util.HashMap<>(Map.of("a", "b"));
        MachineConfig p = c.withAcceleratorProperties(props);
        props.put("c", "d");
        assertEquals(Map.of("a", "b"), p.acceleratorProperties(), "a defensive copy");
    }

    @Test
    void machineRefusesWhatTheAcceleratorOrWorkloadCannotDo() {
        MachineConfig props = MachineConfig.of(2 * MIB, 1, OK).withPreallocate(false)
                .withAcceleratorProperties(Map.of("dirty-ring-size", "4096"));
        refused(() -> Machine.create(props, new SoftAcceleratorProvider()), "soft accelerator takes no property",
                "dirty-ring-size");
        // Fits in RAM but cannot be split among the vCPUs: refused when the machine is built.
        MachineConfig tiny = MachineConfig.of(2 * MIB, 4, OK.withWorkingSet(0, 3 * 4096)).withPreallocate(false);
        refused(() -> Machine.create(tiny, new SoftAcceleratorProvider()), "too small for 4 vCPUs");
    }

    @Test
    void machineBasics() {
        try (Machine m = Machine.create(MachineConfig.of(4 * MIB, 2, OK), new SoftAcceleratorProvider())) {
            assertEquals(2, m.vcpus());
            assertEquals("soft", m.accelerator().name());
            assertEquals(Machine.RAM_NAME, m.ram().name());
            assertEquals(4 * MIB, m.ram().size());
            assertEquals(0, m.pagesWritten());
            assertEquals(0, m.throttle());
            var ctx = m.context(dev.ferry.api.Options.of(Map.of("k", "v")));
            assertEquals("soft", ctx.accelerator());
            assertEquals(2, ctx.vcpus());
            assertEquals(1, ctx.ramBlocks().size());
            assertEquals("v", ctx.options().get("k").orElseThrow());
            assertTrue(ctx.lookup(Machine.class).isPresent());
            assertTrue(ctx.lookup(dev.ferry.memory.MemorySystem.class).isPresent());
            assertTrue(ctx.lookup(dev.ferry.machine.soft.SoftAccelerator.class).isPresent());
            assertTrue(ctx.lookup(String.class).isEmpty());
            assertEquals(1, m.systemMemory().sections().size());
        }
    }
}
