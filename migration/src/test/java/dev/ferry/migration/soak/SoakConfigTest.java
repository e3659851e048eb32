package dev.ferry.migration.soak;

import org.junit.jupiter.api.Test;

import java.util.HashSet;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SoakConfigTest {

    private static final List<SoakConfig.Choice> CHOICES = List.of(new SoakConfig.Choice("soft", List.of("soft")));

    @Test
    void aSeedReplaysItsRun() {
        assertEquals(SoakConfig.draw(42, CHOICES), SoakConfig.draw(42, CHOICES));
        assertNotEquals(SoakConfig.draw(42, CHOICES), SoakConfig.draw(43, CHOICES));
    }

    @Test
    void runsCoverEveryTransportAndFaultAndNeverKillAFilesDestination() {
        Set<String> seen = new HashSet<>();
        int faulted = 0;
        for (long seed = 0; seed < 2000; seed++) {
            SoakConfig c = SoakConfig.draw(seed, CHOICES);
            seen.add(c.transport() + "/" + c.fault());
            faulted += c.fault() == SoakConfig.Fault.NONE ? 0 : 1;
            assertTrue(c.vcpus() >= 1 && c.vcpus() <= 4, c.toString());
            assertTrue(c.faultAtMillis() >= 1, c.toString());
            assertTrue(!(c.transport() == SoakConfig.Transport.FILE && c.fault() == SoakConfig.Fault.KILL_DESTINATION),
                    c.toString());
        }
        assertEquals(4 * 5 - 1, seen.size(), "every transport with every fault it can have: " + seen);
        assertTrue(faulted > 800 && faulted < 1200, "about half the runs go wrong: " + faulted);
    }
}
