package dev.ferry.vhost;

import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class VhostBackendsTest {

    private static VhostDev dev(VhostBackends b, String name) {
        return new VhostDev(name, VhostBackendType.KERNEL, b, VhostDev.LogScan.ELECTED, true,
                List.of(new VirtQueue(0, 256, 0, null)));
    }

    @Test
    void theFirstDevThatLogsScansAndTheNextTakesOverWhenItLeaves() {
        VhostBackends b = new VhostBackends();
        VhostDev first = dev(b, "a");
        VhostDev second = dev(b, "b");
        VhostDev third = dev(b, "c");
        b.elect(VhostBackendType.KERNEL, first);
        b.elect(VhostBackendType.KERNEL, second);
        b.elect(VhostBackendType.KERNEL, third);
        assertTrue(b.isLogger(VhostBackendType.KERNEL, first), "later devs queue behind the first");
        assertFalse(b.isLogger(VhostBackendType.KERNEL, second));
        assertFalse(b.isLogger(VhostBackendType.USER, first), "each backend type has its own logger");
        b.unelect(VhostBackendType.KERNEL, first);
        assertTrue(b.logger(VhostBackendType.KERNEL).isPresent());
        assertFalse(b.isLogger(VhostBackendType.KERNEL, first));
        b.unelect(VhostBackendType.KERNEL, second);
        b.unelect(VhostBackendType.KERNEL, third);
        assertTrue(b.logger(VhostBackendType.KERNEL).isEmpty());
    }

    @Test
    void devsShareOneLogPerTypeAndTheLastReferenceSyncsIt() {
        VhostBackends b = new VhostBackends();
        VhostLog a = b.get(VhostBackendType.KERNEL, 4);
        assertSame(a, b.get(VhostBackendType.KERNEL, 4));
        assertSame(a, b.get(VhostBackendType.KERNEL, 2), "a larger current log serves a smaller need");
        VhostLog user = b.get(VhostBackendType.USER, 4);
        assertNotSame(a, user);
        assertTrue(user.shared() && !a.shared(), "user-like backends log in a memfd");
        VhostLog bigger = b.get(VhostBackendType.KERNEL, 8);
        assertNotSame(a, bigger, "a larger need makes a new current log");
        AtomicInteger syncs = new AtomicInteger();
        b.put(VhostBackendType.KERNEL, a, syncs::incrementAndGet);
        b.put(VhostBackendType.KERNEL, a, syncs::incrementAndGet);
        assertEquals(0, syncs.get());
        b.put(VhostBackendType.KERNEL, a, syncs::incrementAndGet);
        assertEquals(1, syncs.get(), "the last reference syncs the log before it is freed");
        assertThrows(IllegalStateException.class, () -> b.put(VhostBackendType.KERNEL, a, () -> { }));
        assertSame(bigger, b.currentLog(VhostBackendType.KERNEL).orElseThrow());
        b.put(VhostBackendType.KERNEL, bigger, () -> { });
        b.put(VhostBackendType.USER, user, () -> { });
        assertTrue(b.currentLog(VhostBackendType.KERNEL).isEmpty());
    }
}
