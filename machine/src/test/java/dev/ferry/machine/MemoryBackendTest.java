package dev.ferry.machine;

import dev.ferry.machine.soft.SoftAcceleratorProvider;
import dev.ferry.machine.workload.Pattern;
import org.junit.jupiter.api.Test;

import java.lang.foreign.ValueLayout;
import java.util.Map;

import static dev.ferry.machine.Guests.MIB;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** RAM made before its machine: faulted in ahead, handed over once, freed by whoever owns it. */
class MemoryBackendTest {

    private static MachineConfig config(long ram) {
        return new MachineConfig(ram, 1, Guests.workload(Pattern.IDLE, 0, 4096, 1), Map.of(), false);
    }

    @Test
    void aMachineBuiltOnABackendOwnsItsRam() {
        MemoryBackend backend = MemoryBackend.memfd(32 * MIB).preallocateInBackground();
        assertTrue(backend.awaitPreallocation(30_000), "32 MiB faulted in within 30 s");
        assertFalse(backend.preallocating());
        assertTrue(backend.preallocationCpuNanos() > 0, "the thread's CPU time is read when it ends");
        try (Machine m = Machine.create(config(32 * MIB), new SoftAcceleratorProvider(), backend)) {
            assertEquals(32 * MIB, m.ram().size());
            assertEquals(0, m.ram().host().get(ValueLayout.JAVA_LONG, 17 * MIB), "faulting in keeps RAM zero");
            backend.close(); // the maker lets go: the machine's RAM stays
            m.ram().host().set(ValueLayout.JAVA_LONG, 17 * MIB, 42);
            assertEquals(42, m.ram().host().get(ValueLayout.JAVA_LONG, 17 * MIB));
            IllegalStateException second = assertThrows(IllegalStateException.class,
                    () -> Machine.create(config(32 * MIB), new SoftAcceleratorProvider(), backend));
            assertTrue(second.getMessage().contains("closed"), second.getMessage());
        }
    }

    @Test
    void aBackendServesOneMachine() {
        MemoryBackend backend = MemoryBackend.memfd(8 * MIB);
        try (Machine m = Machine.create(config(8 * MIB), new SoftAcceleratorProvider(), backend)) {
            IllegalStateException e = assertThrows(IllegalStateException.class,
                    () -> Machine.create(config(8 * MIB), new SoftAcceleratorProvider(), backend));
            assertTrue(e.getMessage().contains("in use by another machine"), e.getMessage());
            assertEquals(8 * MIB, m.ram().size());
        }
    }

    @Test
    void aBackendOfAnotherSizeIsRefusedAndFreed() {
        MemoryBackend backend = MemoryBackend.memfd(8 * MIB).preallocateInBackground();
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Machine.create(config(4 * MIB), new SoftAcceleratorProvider(), backend));
        assertEquals("a memory backend of 8388608 bytes for a guest of 4194304", e.getMessage());
        assertFalse(backend.preallocating(), "refusing it stopped its thread");
        assertThrows(IllegalStateException.class,
                () -> Machine.create(config(8 * MIB), new SoftAcceleratorProvider(), backend));
    }

    @Test
    void closingWhilePreallocatingWaitsForTheThread() {
        MemoryBackend backend = MemoryBackend.memfd(512 * MIB).preallocateInBackground();
        backend.close(); // joins the thread before unmapping: no fault on freed RAM
        assertFalse(backend.preallocating());
        assertTrue(backend.awaitPreallocation(0));
    }
}
