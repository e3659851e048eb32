package dev.ferry.kvm.dirtylog;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.mockito.Mockito.mock;
import static org.mockito.Mockito.when;

import dev.ferry.api.AcceleratorRequirements;
import dev.ferry.api.Availability;
import dev.ferry.api.DirtyTrackerException;
import dev.ferry.api.DirtyTrackerProvider;
import dev.ferry.api.MachineContext;
import dev.ferry.api.Options;
import dev.ferry.kvm.Kvm;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.ServiceLoader;
import java.util.Set;

import org.junit.jupiter.api.Test;

/** The kvm-dirtylog provider: discovery, availability, options and what it asks of the accelerator. */
class KvmDirtyLogProviderTest {

    private final KvmDirtyLogProvider provider = new KvmDirtyLogProvider();

    @Test
    void isFoundByServiceLoader() {
        assertTrue(ServiceLoader.load(DirtyTrackerProvider.class).stream()
                .anyMatch(p -> p.type() == KvmDirtyLogProvider.class));
        assertEquals("kvm-dirtylog", provider.name());
        assertEquals(10, provider.autoPriority());
        assertEquals(Set.of("manual-protect"), provider.optionNames());
    }

    @Test
    void probeGivesTheRealReason() {
        Availability a = provider.probe();
        assertEquals(Kvm.probe(), a);
        if (!Files.exists(Path.of(Kvm.DEVICE))) {
            assertFalse(a.available());
            assertTrue(a.reason().startsWith("/dev/kvm does not exist: this host has no KVM"), a.reason());
        }
    }

    @Test
    void requirementsAskForKvmAndSettleManualProtect() {
        AcceleratorRequirements auto = provider.requirements(Options.empty());
        assertEquals(Set.of("kvm"), auto.accelerators());
        assertTrue(auto.accepts("kvm"));
        assertFalse(auto.accepts("soft"));
        assertEquals(Map.of("manual-dirty-log-protect", "auto"), auto.properties());
        assertEquals(Map.of("manual-dirty-log-protect", "on"),
                provider.requirements(Options.of(Map.of("manual-protect", "on"))).properties());
        assertEquals(Map.of("manual-dirty-log-protect", "off"),
                provider.requirements(Options.of(Map.of("manual-protect", "false"))).properties());
        assertEquals("option manual-protect must be on or off, got 'sometimes'", assertThrows(IllegalArgumentException.class,
                () -> provider.requirements(Options.of(Map.of("manual-protect", "sometimes")))).getMessage());
        assertEquals("tracker kvm-dirtylog does not understand ring; its option is manual-protect=on|off",
                assertThrows(IllegalArgumentException.class,
                        () -> provider.requirements(Options.of(Map.of("ring", "4096")))).getMessage());
    }

    @Test
    void refusesAMachineWithoutKvm() {
        MachineContext soft = mock(MachineContext.class);
        when(soft.accelerator()).thenReturn("soft");
        assertEquals("tracker kvm-dirtylog needs the kvm accelerator, but the machine runs soft",
                assertThrows(DirtyTrackerException.class, () -> provider.create(soft)).getMessage());
    }
}
