package dev.ferry.kvm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.api.Availability;
import dev.ferry.machine.AcceleratorProvider;
import dev.ferry.machine.workload.PageCursor;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.ServiceLoader;
import java.util.stream.Collectors;

import org.junit.jupiter.api.Test;

/** The kvm accelerator's provider and the parts of the accelerator that need no KVM. */
class KvmAcceleratorProviderTest {

    private final KvmAcceleratorProvider provider = new KvmAcceleratorProvider();

    @Test
    void isFoundByServiceLoaderAndPreferredOverSoftExceptOnPvm() {
        Map<String, AcceleratorProvider> found = ServiceLoader.load(AcceleratorProvider.class).stream()
                .map(ServiceLoader.Provider::get)
                .collect(Collectors.toMap(AcceleratorProvider::name, p -> p));
        assertTrue(found.get("kvm") instanceof KvmAcceleratorProvider, found.keySet().toString());
        if (Kvm.isPvm()) {
            assertTrue(provider.autoPriority() < found.get("soft").autoPriority(), "PVM: soft is preferred");
        } else {
            assertEquals(10, provider.autoPriority());
            assertTrue(provider.autoPriority() > found.get("soft").autoPriority());
        }
        assertEquals(KvmAcceleratorProperties.NAMES, provider.propertyNames());
    }

    @Test
    void probeSaysWhyKvmIsUnavailable() {
        Availability a = provider.probe();
        if (!Files.exists(Path.of(Kvm.DEVICE))) {
            assertFalse(a.available());
            assertTrue(a.reason().startsWith("/dev/kvm does not exist"), a.reason());
            assertTrue(a.reason().contains("load kvm_intel or kvm_amd"), "the reason says what to do: " + a.reason());
        }
        if (!a.available()) {
            String m = assertThrows(IllegalStateException.class, () -> provider.create(Map.of())).getMessage();
            assertEquals("the kvm accelerator is not available here: " + a.reason(), m);
        }
    }

    @Test
    void badPropertiesAreRefusedBeforeKvmIsTouched() {
        assertThrows(IllegalArgumentException.class, () -> provider.create(Map.of("dirty-ring-size", "1000")));
        assertThrows(IllegalArgumentException.class, () -> provider.create(Map.of("vhost", "on")));
    }

    @Test
    void workingSetMustStayAboveTheReservedArea() {
        KvmAccelerator.checkWorkingSet(2L << 20, 4096);
        String m = assertThrows(IllegalArgumentException.class, () -> KvmAccelerator.checkWorkingSet(0, 1L << 20))
                .getMessage();
        assertEquals("the kvm accelerator keeps guest RAM [0, 0x200000) for the guest program and its page tables, "
                + "but the workload's working set reaches down to 0x0; start the working set at 2 MiB or above "
                + "(working-set offset 2097152)", m);
        assertThrows(IllegalArgumentException.class, () -> KvmAccelerator.checkWorkingSet((2L << 20) - 4096, 8192));
        // The guest program and its page tables fit below 2 MiB.
        assertTrue(KvmAccelerator.PAGE_TABLES_GPA + new GuestCode.Layout(KvmAccelerator.CODE_GPA,
                KvmAccelerator.PAGE_TABLES_GPA, 64L << 30).pageTablesBytes() <= KvmAccelerator.RESERVED_BYTES);
        assertTrue(KvmAccelerator.CODE_GPA + GuestCode.CODE_BYTES <= KvmAccelerator.PAGE_TABLES_GPA);
    }

    @Test
    void pacingExitsComeAboutEveryMillisecondOfTargetRate() {
        assertEquals(256, KvmAccelerator.pagesPerExit(0));
        assertEquals(256, KvmAccelerator.pagesPerExit(10_000_000));
        assertEquals(1, KvmAccelerator.pagesPerExit(10));
        assertEquals(26, KvmAccelerator.pagesPerExit(25_600)); // 100 MiB/s: 25.6 pages a millisecond
    }

    @Test
    void guestSeedsAreMixedLikeThePageCursor() {
        // The soft vCPU's PageCursor and the KVM guest must draw the same pages from the same seed.
        Workload w = Workload.of(Pattern.RANDOM, 0);
        for (int vcpu = 0; vcpu < 4; vcpu++) {
            PageCursor cursor = new PageCursor(w, 0, 1000, vcpu);
            assertEquals(cursor.state()[1], KvmAccelerator.vcpuSeed(w.seed(), vcpu));
        }
        assertEquals(GuestCode.Pattern.HOTCOLD, KvmAccelerator.guestPattern(Pattern.HOTCOLD));
        assertThrows(IllegalArgumentException.class, () -> KvmAccelerator.guestPattern(Pattern.IDLE));
    }

    @Test
    void savedStateFramingIsChecked() {
        assertEquals(8 + 144 + 312, KvmVcpuLoop.STATE_BYTES);
        String m = assertThrows(IllegalArgumentException.class, () -> KvmVcpuLoop.parseState(1, new byte[24]))
                .getMessage();
        assertTrue(m.contains("state of 24 bytes, expected 464"), m);
        assertThrows(IllegalArgumentException.class, () -> KvmVcpuLoop.parseState(0, new byte[KvmVcpuLoop.STATE_BYTES]));
    }
}
