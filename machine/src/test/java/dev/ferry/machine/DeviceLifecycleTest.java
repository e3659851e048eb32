package dev.ferry.machine;

import dev.ferry.api.Device;
import dev.ferry.api.GuestRange;
import dev.ferry.api.MemoryListener;
import dev.ferry.api.MemorySection;
import dev.ferry.api.Options;
import dev.ferry.machine.soft.SoftAcceleratorProvider;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import org.junit.jupiter.api.Test;
import org.mockito.InOrder;

import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.mockito.Mockito.inOrder;
import static org.mockito.Mockito.mock;
import static org.mockito.Mockito.never;
import static org.mockito.Mockito.times;
import static org.mockito.Mockito.verify;
import static org.mockito.Mockito.when;

/** The Device SPI as the machine drives it: listeners, start and stop with the vCPUs, unplug, device memory. */
class DeviceLifecycleTest {

    private static final long MIB = 1L << 20;
    private static final Workload SEQ = new Workload(Pattern.SEQUENTIAL, 0, 0, 10, 4096, 0.1, 0.9, 1);

    private static Machine machine(long deviceMemory) {
        return Machine.create(new MachineConfig(16 * MIB, 1, SEQ, Map.of(), false, deviceMemory),
                new SoftAcceleratorProvider());
    }

    /**
     * A per-section listener that counts its callbacks. Not a Mockito mock: a mock overrides both
     * logSync and logSyncGlobal, which the memory system refuses.
     */
    static final class Counting implements MemoryListener {
        int adds;
        int dels;
        int syncs;
        int globalStarts;
        RuntimeException failOnCommit;

        @Override
        public void regionAdd(MemorySection section) {
            adds++;
        }

        @Override
        public void regionDel(MemorySection section) {
            dels++;
        }

        @Override
        public void logSync(MemorySection section) {
            syncs++;
        }

        @Override
        public void logGlobalStart() {
            globalStarts++;
        }

        @Override
        public void commit() {
            if (failOnCommit != null) {
                RuntimeException e = failOnCommit;
                failOnCommit = null;
                throw e;
            }
        }
    }

    private static Device device(String id, MemoryListener... listeners) {
        Device d = mock(Device.class);
        when(d.id()).thenReturn(id);
        when(d.memoryListeners()).thenReturn(List.of(listeners));
        return d;
    }

    @Test
    void aDeviceStartsAndStopsWithTheVcpusAndItsListenersSeeTheTopology() {
        Counting listener = new Counting();
        Device d = device("dev0", listener);
        try (Machine m = machine(0)) {
            m.plug(d);
            assertTrue(listener.adds > 0, "the topology is replayed to a plugged device's listener");
            verify(d, never()).start(); // the machine does not run yet
            m.start();
            m.pause();
            m.resume();
            m.pause();
            InOrder order = inOrder(d);
            order.verify(d).start();
            order.verify(d).stop();
            order.verify(d).start();
            order.verify(d).stop();
            m.memory().globalDirtyLogStart();
            m.memory().globalDirtyLogSync(false);
            assertEquals(1, listener.globalStarts);
            assertTrue(listener.syncs > 0);
        }
        verify(d).close();
        assertEquals(listener.adds, listener.dels, "closing the machine unregisters the listener");
    }

    @Test
    void unplugStopsTheDeviceAndUnregistersItsListeners() {
        Counting listener = new Counting();
        Device d = device("dev0", listener);
        try (Machine m = machine(0)) {
            m.plug(d);
            m.start();
            m.unplug(d);
            InOrder order = inOrder(d);
            order.verify(d).stop();
            order.verify(d).close();
            assertEquals(listener.adds, listener.dels, "unplug unregisters the listener");
            assertEquals(List.of(), m.devices());
            m.pause();
        }
        verify(d, times(1)).stop();
        verify(d, times(1)).close();
    }

    @Test
    void idsAreUniqueAndAFailedPlugLeavesNoListenerBehind() {
        Counting good = new Counting();
        Counting bad = new Counting();
        bad.failOnCommit = new IllegalStateException("boom");
        try (Machine m = machine(0)) {
            m.plug(device("a"));
            assertThrows(IllegalArgumentException.class, () -> m.plug(device("a")));
            assertThrows(IllegalStateException.class, () -> m.plug(device("b", good, bad)));
            assertEquals(good.adds, good.dels, "the listener registered before the failure is unregistered again");
            assertEquals(1, m.devices().size());
        }
    }

    @Test
    void deviceMemoryComesFromTheTopOfRamAndTheWorkloadKeepsOut() {
        try (Machine m = machine(2 * MIB)) {
            Workload w = m.config().workload();
            assertEquals(16 * MIB - 2 * MIB, w.workingSetOffset() + w.workingSetSize(16 * MIB));
            GuestRange a = m.allocateDeviceMemory(MIB);
            GuestRange b = m.allocateDeviceMemory(MIB);
            assertEquals(new GuestRange(14 * MIB, MIB), a);
            assertEquals(new GuestRange(15 * MIB, MIB), b);
            assertThrows(IllegalArgumentException.class, () -> m.allocateDeviceMemory(4096));
            assertSame(b, m.deviceContext(Options.empty(), b).deviceMemory().orElseThrow());
            Object shared = m.context(Options.empty()).shared(StringBuilder.class, StringBuilder::new);
            assertSame(shared, m.deviceContext(Options.empty(), a).shared(StringBuilder.class, StringBuilder::new),
                    "one object per machine and type");
        }
        Workload explicit = SEQ.withWorkingSet(0, 15 * MIB);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Machine.create(
                new MachineConfig(16 * MIB, 1, explicit, Map.of(), false, 2 * MIB), new SoftAcceleratorProvider()));
        assertTrue(e.getMessage().contains("set aside for devices"), e.getMessage());
    }
}
