package dev.ferry.memory;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class BarMappingTest {

    private final MemorySystem ms = new MemorySystem();

    @AfterEach
    void close() {
        ms.close();
    }

    @Test
    void aBarMovesUnmapsAndNeverCoversRam() {
        MemoryRegion root = ms.container("root", 1L << 40);
        root.addSubregion(0, ms.ramRegion("ram", ms.allocateRam("ram", 1 << 20)));
        AddressSpace as = ms.addressSpace("memory", root);
        List<String> log = Collections.synchronizedList(new ArrayList<>());
        as.registerListener(new RecordingListener.PerSection("R", 0, log));
        BarMapping bar = new BarMapping(root, ms.ramRegion("bar2", ms.allocateRam("bar2", 64 << 10)));
        assertEquals(BarMapping.UNMAPPED, bar.address());

        IllegalArgumentException over = assertThrows(IllegalArgumentException.class, () -> bar.moveTo(0xf0000));
        assertTrue(over.getMessage().contains("overlap ram"), over.getMessage());
        assertEquals(BarMapping.UNMAPPED, bar.address(), "a refused move leaves the BAR where it was");
        assertNull(as.flatView().lookup(0x100000));

        bar.moveTo(0x100000);
        assertEquals("bar2", as.flatView().lookup(0x100000).region());
        long commits = ms.topologyCommits();
        ms.transaction(() -> {
            bar.moveTo(0x200000);
            bar.moveTo(0x300000);
        });
        assertEquals(commits + 1, ms.topologyCommits(), "moves inside a transaction commit with it");
        assertNull(as.flatView().lookup(0x100000));
        assertEquals("bar2", as.flatView().lookup(0x300000).region());
        bar.moveTo(0x300000);
        assertEquals(commits + 1, ms.topologyCommits(), "no move, no commit");
        bar.moveTo(BarMapping.UNMAPPED);
        assertNull(as.flatView().lookup(0x300000));
        assertThrows(IllegalArgumentException.class, () -> bar.moveTo(-5));
    }
}
