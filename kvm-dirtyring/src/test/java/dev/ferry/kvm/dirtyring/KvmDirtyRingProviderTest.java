package dev.ferry.kvm.dirtyring;

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
import dev.ferry.kvm.dirtylog.KvmDirtyLogProvider;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.ServiceLoader;
import java.util.Set;

import org.junit.jupiter.api.Test;

/** The kvm-dirtyring provider: discovery, availability and its reasons, the ring size option. */
class KvmDirtyRingProviderTest {

    private static final int MIB = 1 << 20;

    private static KvmDirtyRingProvider host(boolean kvm, int maxRingBytes) {
        return new KvmDirtyRingProvider(() -> kvm ? Availability.yes() : Availability.no("no KVM here"),
                () -> maxRingBytes, () -> false);
    }

    private static String rejected(KvmDirtyRingProvider p, String size) {
        return assertThrows(IllegalArgumentException.class,
                () -> p.requirements(Options.of(Map.of("dirty-ring-size", size)))).getMessage();
    }

    @Test
    void isFoundByServiceLoaderAndPreferredOverTheBitmapTracker() {
        assertTrue(ServiceLoader.load(DirtyTrackerProvider.class).stream()
                .anyMatch(p -> p.type() == KvmDirtyRingProvider.class));
        KvmDirtyRingProvider p = new KvmDirtyRingProvider();
        assertEquals("kvm-dirtyring", p.name());
        assertEquals(Set.of("dirty-ring-size", "reap-period-ms"), p.optionNames());
        assertTrue(p.autoPriority() > new KvmDirtyLogProvider().autoPriority());
    }

    @Test
    void probeHereGivesTheRealReason() {
        Availability a = new KvmDirtyRingProvider().probe();
        Availability kvm = Kvm.probe();
        if (!kvm.available()) {
            assertEquals(kvm, a, "no KVM: the tracker says why KVM is missing");
        }
        if (!Files.exists(Path.of(Kvm.DEVICE))) {
            assertFalse(a.available());
            assertTrue(a.reason().startsWith("/dev/kvm does not exist: this host has no KVM"), a.reason());
        }
    }

    @Test
    void probeNeedsTheRingCapability() {
        assertEquals(Availability.no("no KVM here"), host(false, MIB).probe());
        assertEquals("this kernel's KVM has no dirty ring (neither KVM_CAP_DIRTY_LOG_RING_ACQ_REL nor "
                + "KVM_CAP_DIRTY_LOG_RING; Linux 5.11+ on x86): use the kvm-dirtylog tracker", host(true, 0).probe().reason());
        assertEquals("this kernel's KVM allows dirty rings of only 512 entries per vCPU, fewer than 1024: use the "
                + "kvm-dirtylog tracker", host(true, 8192).probe().reason());
        assertTrue(host(true, MIB).probe().available());
        assertEquals("KVM cannot be used: boom", new KvmDirtyRingProvider(() -> {
            throw new IllegalStateException("boom");
        }, () -> 0, () -> false).probe().reason());
    }

    @Test
    void pvmIsRefusedWithTheReason() {
        Availability a = new KvmDirtyRingProvider(Availability::yes, () -> MIB, () -> true).probe();
        assertFalse(a.available());
        assertTrue(a.reason().startsWith("this host's KVM is PVM (module kvm_pvm)") && a.reason().endsWith(
                "use the kvm-dirtylog tracker"), a.reason());
    }

    @Test
    void requirementsEnableTheRingOnTheKvmAccelerator() {
        AcceleratorRequirements r = host(true, MIB).requirements(Options.empty());
        assertEquals(Set.of("kvm"), r.accelerators());
        assertFalse(r.accepts("soft"));
        assertEquals(Map.of("dirty-ring-size", "4096"), r.properties(), "default 4096 entries per vCPU");
        assertEquals(Map.of("dirty-ring-size", "1024"),
                host(true, MIB).requirements(Options.of(Map.of("dirty-ring-size", "1024"))).properties());
        assertEquals(Map.of("dirty-ring-size", "65536"),
                host(true, MIB).requirements(Options.of(Map.of("dirty-ring-size", " 65536 "))).properties());
        // Without KVM to ask, the kernel's own limit applies; the accelerator checks the host's later.
        assertEquals(Map.of("dirty-ring-size", "65536"),
                host(false, 0).requirements(Options.of(Map.of("dirty-ring-size", "65536"))).properties());
    }

    @Test
    void wrongSizesAreRejectedWithTheValidRange() {
        KvmDirtyRingProvider p = host(true, MIB);
        assertEquals("dirty-ring-size must be a power of two from 1024 to 65536 entries per vCPU, got 1000",
                rejected(p, "1000"));
        assertEquals("dirty-ring-size must be a power of two from 1024 to 65536 entries per vCPU, got 512",
                rejected(p, "512"));
        assertEquals("dirty-ring-size must be a power of two from 1024 to 65536 entries per vCPU, got 3072",
                rejected(p, "3072"));
        assertEquals("dirty-ring-size must be a power of two from 1024 to 65536 entries per vCPU, got 131072",
                rejected(p, "131072"));
        assertEquals("dirty-ring-size must be a power of two from 1024 to 65536 entries per vCPU, got 0",
                rejected(p, "0"));
        assertEquals("dirty-ring-size must be a power of two from 1024 to 65536 entries per vCPU, got -4096",
                rejected(p, "-4096"));
        assertEquals("dirty-ring-size must be a power of two from 1024 to 65536 entries per vCPU, got 'lots'",
                rejected(p, "lots"));
        // A host that allows less: its limit is the range's top.
        assertEquals("dirty-ring-size must be a power of two from 1024 to 2048 entries per vCPU, got 4096",
                rejected(host(true, 32768), "4096"));
        assertEquals("this host's KVM allows dirty rings of at most 2048 entries per vCPU, below the default 4096; "
                + "give dirty-ring-size from 1024 to 2048", assertThrows(IllegalArgumentException.class,
                () -> host(true, 32768).requirements(Options.empty())).getMessage());
        assertEquals("tracker kvm-dirtyring does not understand ring; its options are dirty-ring-size=<entries per "
                + "vCPU> and reap-period-ms=<milliseconds, 0 for no reaper thread>",
                assertThrows(IllegalArgumentException.class,
                        () -> p.requirements(Options.of(Map.of("ring", "4096")))).getMessage());
        assertEquals("reap-period-ms=-1 is out of range: 0 (no reaper thread) to 60000 milliseconds",
                assertThrows(IllegalArgumentException.class,
                        () -> p.requirements(Options.of(Map.of("reap-period-ms", "-1")))).getMessage());
        assertEquals("option reap-period-ms must be an integer, got 'soon'", assertThrows(IllegalArgumentException.class,
                () -> p.requirements(Options.of(Map.of("reap-period-ms", "soon")))).getMessage());
        assertEquals(0, KvmDirtyRingProvider.reapPeriodNanos(Options.of(Map.of("reap-period-ms", "0"))));
        assertEquals(KvmDirtyRingTracker.DEFAULT_REAP_PERIOD_NANOS, KvmDirtyRingProvider.reapPeriodNanos(Options.empty()));
        for (String msg : List.of(rejected(p, "1000"), rejected(p, "lots"))) {
            assertFalse(msg.contains("\n"), "one line");
        }
    }

    @Test
    void refusesAMachineWithoutKvm() {
        MachineContext soft = mock(MachineContext.class);
        when(soft.accelerator()).thenReturn("soft");
        assertEquals("tracker kvm-dirtyring needs the kvm accelerator, but the machine runs soft",
                assertThrows(DirtyTrackerException.class, () -> new KvmDirtyRingProvider().create(soft)).getMessage());
    }
}
