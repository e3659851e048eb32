package dev.ferry.kvm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.kvm.KvmAcceleratorProperties.ManualProtect;

import java.util.Map;

import org.junit.jupiter.api.Test;

/** Property parsing and validation of the kvm accelerator; no KVM needed. */
class KvmAcceleratorPropertiesTest {

    private static final int ONE_MIB = 1 << 20;

    private static String failure(Map<String, String> properties) {
        return assertThrows(IllegalArgumentException.class, () -> KvmAcceleratorProperties.parse(properties)).getMessage();
    }

    @Test
    void defaultsAreBitmapsWithManualProtectWhereOffered() {
        KvmAcceleratorProperties p = KvmAcceleratorProperties.parse(Map.of());
        assertEquals(KvmAcceleratorProperties.defaults(), p);
        assertEquals(0, p.dirtyRingEntries());
        assertTrue(p.wantsManualProtect(3));
        assertFalse(p.wantsManualProtect(0));
        p.checkDirtyRing(0); // no ring asked: nothing to check
    }

    @Test
    void ringSizeMustBeAPowerOfTwoOfAtLeast1024() {
        assertEquals(4096, KvmAcceleratorProperties.parse(Map.of("dirty-ring-size", "4096")).dirtyRingEntries());
        assertEquals(4096 * 16, KvmAcceleratorProperties.parse(Map.of("dirty-ring-size", " 4096 ")).dirtyRingBytes());
        assertEquals("dirty-ring-size must be a power of two of at least 1024 entries, got 1000",
                failure(Map.of("dirty-ring-size", "1000")));
        assertEquals("dirty-ring-size must be a power of two of at least 1024 entries, got 512",
                failure(Map.of("dirty-ring-size", "512")));
        assertEquals("dirty-ring-size must be a power of two of at least 1024 entries, got 0",
                failure(Map.of("dirty-ring-size", "0")));
        assertEquals("dirty-ring-size must be a number of entries (a power of two, at least 1024), got '4k'",
                failure(Map.of("dirty-ring-size", "4k")));
    }

    @Test
    void ringSizeIsBoundedByWhatTheKernelAllows() {
        // This host's KVM: 1 MiB per vCPU = 65536 entries of 16 bytes.
        KvmAcceleratorProperties.parse(Map.of("dirty-ring-size", "65536")).checkDirtyRing(ONE_MIB);
        KvmAcceleratorProperties.parse(Map.of("dirty-ring-size", "1024")).checkDirtyRing(ONE_MIB);
        KvmAcceleratorProperties tooBig = KvmAcceleratorProperties.parse(Map.of("dirty-ring-size", "131072"));
        assertEquals("dirty-ring-size must be a power of two from 1024 to 65536 entries on this host (KVM allows "
                        + "1048576 bytes per vCPU, 16 bytes per entry), got 131072",
                assertThrows(IllegalArgumentException.class, () -> tooBig.checkDirtyRing(ONE_MIB)).getMessage());
        KvmAcceleratorProperties any = KvmAcceleratorProperties.parse(Map.of("dirty-ring-size", "4096"));
        String none = assertThrows(IllegalArgumentException.class, () -> any.checkDirtyRing(0)).getMessage();
        assertTrue(none.contains("no KVM dirty ring"), none);
    }

    @Test
    void manualProtectValues() {
        assertEquals(ManualProtect.ON, KvmAcceleratorProperties.parse(Map.of("manual-dirty-log-protect", "on")).manualProtect());
        assertEquals(ManualProtect.OFF, KvmAcceleratorProperties.parse(Map.of("manual-dirty-log-protect", "OFF")).manualProtect());
        assertEquals(ManualProtect.AUTO, KvmAcceleratorProperties.parse(Map.of("manual-dirty-log-protect", "auto")).manualProtect());
        assertEquals("manual-dirty-log-protect must be on, off or auto, got 'maybe'",
                failure(Map.of("manual-dirty-log-protect", "maybe")));

        KvmAcceleratorProperties on = KvmAcceleratorProperties.parse(Map.of("manual-dirty-log-protect", "on"));
        assertTrue(on.wantsManualProtect(1));
        String missing = assertThrows(IllegalArgumentException.class, () -> on.wantsManualProtect(0)).getMessage();
        assertTrue(missing.contains("lacks KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2"), missing);
        assertFalse(KvmAcceleratorProperties.parse(Map.of("manual-dirty-log-protect", "off")).wantsManualProtect(3));
        // A dirty ring replaces the bitmaps, so auto leaves manual protect off.
        assertFalse(KvmAcceleratorProperties.parse(Map.of("dirty-ring-size", "4096")).wantsManualProtect(3));
    }

    @Test
    void ringAndManualProtectExcludeEachOther() {
        String m = failure(Map.of("dirty-ring-size", "4096", "manual-dirty-log-protect", "on"));
        assertTrue(m.startsWith("manual-dirty-log-protect=on cannot be combined with dirty-ring-size"), m);
    }

    @Test
    void unknownPropertiesAreNamed() {
        assertEquals("the kvm accelerator does not understand bogus; its properties are dirty-ring-size, "
                + "manual-dirty-log-protect", failure(Map.of("bogus", "1")));
    }
}
