package dev.ferry.machine;

import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.OptionalLong;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class HostMemoryTest {

    private static final List<String> MEMINFO = List.of("MemTotal:       24683584 kB",
            "MemFree:        20000000 kB", "MemAvailable:    8388608 kB", "Buffers:            1024 kB");

    @Test
    void readsMemAvailable() {
        HostMemory h = HostMemory.of(MEMINFO, OptionalLong.empty());
        assertEquals(8L << 30, h.available());
        assertEquals("MemAvailable", h.source());
    }

    @Test
    void aTighterCgroupLimitWins() {
        HostMemory h = HostMemory.of(MEMINFO, OptionalLong.of(2L << 30));
        assertEquals(2L << 30, h.available());
        assertTrue(h.source().contains("cgroup"), h.source());
        assertEquals(8L << 30, HostMemory.of(MEMINFO, OptionalLong.of(64L << 30)).available());
    }

    @Test
    void keepsHeadroomFree() {
        HostMemory h = HostMemory.of(MEMINFO, OptionalLong.empty());
        assertTrue(h.shortfall((8L << 30) - HostMemory.HEADROOM).isEmpty());
        String why = h.shortfall((8L << 30) - HostMemory.HEADROOM + 4096).orElseThrow();
        assertTrue(why.contains("8.0 GiB available (MemAvailable)") && why.contains("0.5 GiB"), why);
        assertTrue(h.shortfall(Long.MAX_VALUE).isPresent());
    }

    @Test
    void aMeminfoWithoutMemAvailableIsAnError() {
        assertThrows(IllegalStateException.class, () -> HostMemory.of(List.of("MemTotal: 1 kB"), OptionalLong.empty()));
    }

    @Test
    void machineCreateRefusesBeforeAllocating() {
        long tooBig = (HostMemory.probe().available() >> 21 << 21) * 2;
        var e = assertThrows(IllegalArgumentException.class, () -> Machine.create(
                MachineConfig.of(tooBig, 1, dev.ferry.machine.workload.Workload.of(dev.ferry.machine.workload.Pattern.IDLE, 0)).withPreallocate(false),
                new dev.ferry.machine.soft.SoftAcceleratorProvider()));
        assertTrue(e.getMessage().contains("does not fit"), e.getMessage());
    }
}
