package dev.ferry.migration.bootstrap;

import dev.ferry.api.AcceleratorRequirements;
import dev.ferry.api.Availability;
import dev.ferry.api.DirtyTrackerProvider;
import dev.ferry.api.MemoryListener;
import dev.ferry.machine.MachineConfig;
import dev.ferry.machine.soft.SoftAcceleratorProvider;
import dev.ferry.machine.soft.SoftTrackerProvider;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import dev.ferry.migration.bootstrap.Fakes.Accel;
import dev.ferry.migration.bootstrap.Fakes.Tracker;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

import java.util.List;
import java.util.Map;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Bootstrap's choice of accelerator and trackers, and the one-line messages when it cannot choose. */
class BootstrapTest {

    private static final Accel SOFT = Accel.of("soft", 0);
    private static final Accel KVM = Accel.of("kvm", 10);
    private static final Tracker SOFT_TRACKER = Tracker.of("soft", "soft").auto(1);
    private static final Tracker DIRTYLOG = Tracker.of("kvm-dirtylog", "kvm").auto(5);
    private static final Tracker RING = Tracker.of("kvm-dirtyring", "kvm").options("dirty-ring-size").needs(o -> {
        long size = o.getLong("dirty-ring-size", 4096);
        if (Long.bitCount(size) != 1) {
            throw new IllegalArgumentException("dirty-ring-size must be a power of two, got " + size);
        }
        return new AcceleratorRequirements(Set.of("kvm"), Map.of("dirty-ring-size", Long.toString(size)));
    });
    private static final Tracker ANY = Tracker.of("any");

    private static String refused(Executable e, String... fragments) {
        UsageException x = assertThrows(UsageException.class, e);
        String m = x.getMessage();
        for (String f : fragments) {
            assertTrue(m.contains(f), () -> "'" + m + "' lacks '" + f + "'");
        }
        assertFalse(m.contains("\n"), "one line: " + m);
        return m;
    }

    private static Bootstrap kvmHost() {
        return Fakes.bootstrap(List.of(SOFT_TRACKER, DIRTYLOG, RING, ANY), List.of(SOFT, KVM));
    }

    private static Bootstrap softOnlyHost() {
        return Fakes.bootstrap(List.of(SOFT_TRACKER, DIRTYLOG.unavailable("no /dev/kvm"), ANY),
                List.of(SOFT, KVM.unavailable("/dev/kvm does not exist")));
    }

    @Test
    void unknownTrackerListsTheAvailableOnes() {
        String m = refused(() -> softOnlyHost().plan("auto", "nope", Map.of()), "unknown tracker 'nope'",
                "available here: any, soft (or auto)");
        assertFalse(m.contains("kvm-dirtylog"), "an unavailable tracker is not offered: " + m);
    }

    @Test
    void unavailableTrackerSaysWhy() {
        refused(() -> softOnlyHost().plan("auto", "kvm-dirtylog", Map.of()),
                "tracker kvm-dirtylog is not available here: no /dev/kvm", "available here: any, soft");
    }

    @Test
    void noTrackerAvailableAtAll() {
        Bootstrap b = Fakes.bootstrap(List.of(SOFT_TRACKER.unavailable("broken")), List.of(SOFT));
        refused(() -> b.plan("soft", "x", Map.of()), "unknown tracker 'x'", "no tracker is available here");
        refused(() -> b.plan("soft", "auto", Map.of()), "no available tracker works with the soft accelerator");
    }

    @Test
    void unknownAndUnavailableAccelerators() {
        refused(() -> kvmHost().plan("tcg", "soft", Map.of()), "unknown accelerator 'tcg'", "known: auto, kvm, soft");
        refused(() -> softOnlyHost().plan("kvm", "soft", Map.of()),
                "accelerator kvm is not available here: /dev/kvm does not exist", "--accel auto");
    }

    @Test
    void trackerNeedingAnotherAccelerator() {
        refused(() -> kvmHost().plan("soft", "kvm-dirtylog", Map.of()),
                "tracker kvm-dirtylog needs the kvm accelerator, but --accel soft was chosen");
        refused(() -> kvmHost().plan("kvm", "soft", Map.of()), "tracker soft needs the soft accelerator");
        // Two trackers no accelerator serves together.
        refused(() -> kvmHost().plan("auto", "soft,kvm-dirtylog", Map.of()),
                "no available accelerator suits trackers soft,kvm-dirtylog", "available accelerators: kvm, soft");
        // With --accel auto, the accelerator follows the tracker.
        assertEquals("soft", kvmHost().plan("auto", "soft", Map.of()).accelerator().name());
        assertEquals("kvm", kvmHost().plan("auto", "kvm-dirtylog", Map.of()).accelerator().name());
        assertEquals("kvm", kvmHost().plan("auto", "any", Map.of()).accelerator().name(), "highest priority");
        assertEquals("soft", softOnlyHost().plan("auto", "any", Map.of()).accelerator().name());
    }

    @Test
    void optionsMustBeUnderstoodAndValid() {
        refused(() -> kvmHost().plan("auto", "soft", Map.of("dirty-ring-size", "4096")),
                "option dirty-ring-size is not understood by tracker(s) soft");
        refused(() -> kvmHost().plan("auto", "kvm-dirtyring", Map.of("dirty-ring-size", "1000")),
                "tracker kvm-dirtyring: dirty-ring-size must be a power of two, got 1000");
        refused(() -> kvmHost().plan("auto", "kvm-dirtyring", Map.of("dirty-ring-size", "lots")),
                "tracker kvm-dirtyring: option dirty-ring-size must be an integer, got 'lots'");
        Plan p = kvmHost().plan("auto", "kvm-dirtyring,kvm-dirtylog", Map.of("dirty-ring-size", "8192"));
        assertEquals("kvm", p.accelerator().name());
        assertEquals(Map.of("dirty-ring-size", "8192"), p.acceleratorProperties());
        assertEquals("8192", p.trackerOptions().get("kvm-dirtyring").get("dirty-ring-size").orElseThrow());
        assertTrue(p.trackerOptions().get("kvm-dirtylog").names().isEmpty(), "each tracker gets only its own options");
        assertEquals("kvm-dirtyring,kvm-dirtylog", p.trackerNames(), "in the order asked for");
    }

    @Test
    void trackersDisagreeingOnAnAcceleratorProperty() {
        Tracker other = Tracker.of("other").needs(o -> new AcceleratorRequirements(Set.of(), Map.of("dirty-ring-size", "512")));
        Bootstrap b = Fakes.bootstrap(List.of(RING, other), List.of(KVM));
        refused(() -> b.plan("kvm", "kvm-dirtyring,other", Map.of()),
                "trackers disagree on accelerator property dirty-ring-size", "4096", "512");
    }

    @Test
    void emptyAndDuplicateNames() {
        refused(() -> kvmHost().plan("auto", "soft,,any", Map.of()), "empty name in tracker list 'soft,,any'");
        refused(() -> kvmHost().plan("auto", "", Map.of()), "empty name in tracker list ''");
        refused(() -> kvmHost().plan("auto", "soft,", Map.of()), "empty name");
        refused(() -> kvmHost().plan("auto", " , ", Map.of()), "empty name");
        refused(() -> kvmHost().plan("auto", "soft, soft", Map.of()), "tracker soft is listed twice");
        assertEquals("any,soft", kvmHost().plan("soft", " any , soft ", Map.of()).trackerNames());
    }

    @Test
    void autoChoosesTheBestAvailablePair() {
        Plan soft = softOnlyHost().plan("auto", "auto", Map.of());
        assertEquals("soft", soft.accelerator().name());
        assertEquals("soft", soft.trackerNames());
        Plan kvm = kvmHost().plan("auto", "auto", Map.of());
        assertEquals("kvm", kvm.accelerator().name());
        assertEquals("kvm-dirtylog", kvm.trackerNames(), "highest auto priority that accepts kvm");
        assertEquals("soft", kvmHost().plan("soft", "auto", Map.of()).trackerNames());
        // Priority 0 means never chosen automatically, even when it is the only one.
        Bootstrap b = Fakes.bootstrap(List.of(ANY), List.of(SOFT));
        refused(() -> b.plan("auto", "auto", Map.of()), "no available tracker works with the soft accelerator");
        assertEquals("any", b.plan("auto", "any", Map.of()).trackerNames());
        refused(() -> Fakes.bootstrap(List.of(SOFT_TRACKER), List.of(SOFT.unavailable("x"))).plan("auto", "auto", Map.of()),
                "no accelerator is available here");
    }

    @Test
    void autoWithOptionsPicksATrackerThatUnderstandsThem() {
        Plan p = kvmHost().plan("kvm", "auto", Map.of());
        assertEquals("kvm-dirtylog", p.trackerNames());
        // An option only kvm-dirtyring understands: auto must not pick a tracker that rejects it.
        Tracker ringAuto = RING.auto(3);
        Bootstrap b = Fakes.bootstrap(List.of(DIRTYLOG, ringAuto), List.of(KVM));
        refused(() -> b.plan("kvm", "auto", Map.of("dirty-ring-size", "4096")), "not understood by tracker(s) kvm-dirtylog");
    }

    @Test
    void aProbeThatThrowsMeansUnavailable() {
        DirtyTrackerProvider bad = Tracker.of("bad").auto(9);
        DirtyTrackerProvider throwing = new DirtyTrackerProvider() {
            @Override
            public String name() {
                return "throwing";
            }

            @Override
            public String description() {
                return "probes badly";
            }

            @Override
            public Availability probe() {
                throw new IllegalStateException("ioctl exploded");
            }

            @Override
            public dev.ferry.api.DirtyTracker create(dev.ferry.api.MachineContext machine) {
                throw new AssertionError();
            }
        };
        Bootstrap b = Fakes.bootstrap(List.of(bad, throwing), List.of(SOFT));
        PluginInfo info = b.trackers().stream().filter(t -> t.name().equals("throwing")).findFirst().orElseThrow();
        assertFalse(info.available());
        assertEquals("probe failed: ioctl exploded", info.reason());
        assertEquals("probes badly", info.description());
        refused(() -> b.plan("auto", "throwing", Map.of()), "tracker throwing is not available here: probe failed: ioctl exploded");
    }

    @Test
    void listsTrackersAndAcceleratorsByName() {
        Bootstrap b = softOnlyHost();
        assertEquals(List.of("any", "kvm-dirtylog", "soft"), b.trackers().stream().map(PluginInfo::name).toList());
        PluginInfo kvm = b.trackers().get(1);
        assertFalse(kvm.available());
        assertEquals("no /dev/kvm", kvm.reason());
        assertEquals(Map.of("kvm", Availability.no("/dev/kvm does not exist"), "soft", Availability.yes()), b.accelerators());
    }

    @Test
    void duplicateNamesAreAConfigurationError() {
        Plugins twoSofts = new Plugins(List.of(SOFT_TRACKER, Tracker.of("soft")), List.of(SOFT), List.of());
        RuntimeException e = assertThrows(IllegalStateException.class, () -> Bootstrap.create(twoSofts));
        // One line (the command line prints one), saying what Guice found and who claims the name.
        assertFalse(e.getMessage().contains("\n"), e.getMessage());
        assertTrue(e.getMessage().contains("Duplicate key \"soft\""), e.getMessage());
        assertTrue(e.getMessage().contains("tracker soft=[" + Tracker.class.getName()), e.getMessage());
        Plugins twoAccels = new Plugins(List.of(SOFT_TRACKER), List.of(SOFT, Accel.of("soft", 3)), List.of());
        RuntimeException f = assertThrows(IllegalStateException.class, () -> Bootstrap.create(twoAccels));
        assertTrue(f.getMessage().contains("Duplicate key \"soft\""), f.getMessage());
        assertTrue(f.getMessage().contains("accelerator soft="), f.getMessage());
        assertFalse(f.getMessage().contains("\n"), f.getMessage());
    }

    @Test
    void discoversTheSoftProvidersOnTheClassPath() {
        Plugins found = Plugins.discover();
        assertTrue(found.problems().isEmpty(), found.problems().toString());
        assertTrue(found.trackers().stream().anyMatch(t -> t instanceof SoftTrackerProvider));
        assertTrue(found.accelerators().stream().anyMatch(a -> a instanceof SoftAcceleratorProvider));
        Bootstrap b = Bootstrap.create();
        assertTrue(b.trackers().stream().anyMatch(t -> t.name().equals("soft") && t.available()));
        Plan p = b.plan("soft", "auto", Map.of());
        assertEquals("soft", p.trackerNames());
        assertInstanceOf(SoftAcceleratorProvider.class, p.accelerator());
    }

    @Test
    void buildAttachesTheTrackersAndCloseReleasesThem() {
        Bootstrap b = Bootstrap.create();
        Plan p = b.plan("soft", "soft", Map.of());
        MachineConfig config = MachineConfig.of(4L << 20, 2, Workload.of(Pattern.RANDOM, 0)).withPreallocate(false);
        TrackedMachine tm = b.build(p, config);
        try {
            assertSame(p, tm.plan());
            assertEquals(1, tm.trackers().size());
            assertEquals("soft", tm.trackers().getFirst().name());
            assertEquals("soft", tm.machine().accelerator().name());
            tm.machine().start();
            tm.machine().memory().globalDirtyLogStart();
            tm.machine().memory().globalDirtyLogSync(false);
            assertTrue(tm.trackers().getFirst().statistics().get("section-syncs") > 0);
        } finally {
            tm.close();
        }
        assertThrows(IllegalStateException.class, () -> tm.machine().start(), "closed");
    }

    @Test
    void buildReportsWhatTheAcceleratorRefuses() {
        Tracker wantsProps = Tracker.of("props", "soft")
                .needs(o -> new AcceleratorRequirements(Set.of("soft"), Map.of("dirty-ring-size", "4096")));
        Bootstrap b = Fakes.bootstrap(List.of(wantsProps), List.of(SOFT));
        Plan p = b.plan("soft", "props", Map.of());
        MachineConfig config = MachineConfig.of(2L << 20, 1, Workload.of(Pattern.RANDOM, 0)).withPreallocate(false);
        refused(() -> b.build(p, config), "the soft accelerator takes no property, got dirty-ring-size");
    }

    @Test
    void buildClosesTheMachineWhenATrackerFails() {
        Tracker failing = Tracker.of("failing").creates(m -> {
            throw new dev.ferry.api.DirtyTrackerException("tracker failing: cannot track this machine");
        });
        List<dev.ferry.api.DirtyTracker> closed = new java.util.ArrayList<>();
        Tracker first = Tracker.of("first").creates(m -> new dev.ferry.api.DirtyTracker() {
            @Override
            public void close() {
                closed.add(this);
            }
        });
        Bootstrap b = Fakes.bootstrap(List.of(first, failing), List.of(SOFT));
        Plan p = b.plan("soft", "first,failing", Map.of());
        MachineConfig config = MachineConfig.of(2L << 20, 1, Workload.of(Pattern.RANDOM, 0)).withPreallocate(false);
        var e = assertThrows(dev.ferry.api.DirtyTrackerException.class, () -> b.build(p, config));
        assertTrue(e.getMessage().contains("cannot track"));
        assertEquals(1, closed.size(), "the tracker attached before the failure is closed");
    }

    @Test
    void aListenerOverridingBothSyncStylesIsRefused() {
        MemoryListener both = new MemoryListener() {
            @Override
            public void logSync(dev.ferry.api.MemorySection section) {
            }

            @Override
            public void logSyncGlobal(boolean lastStage) {
            }
        };
        Bootstrap b = Bootstrap.create();
        MachineConfig config = MachineConfig.of(2L << 20, 1, Workload.of(Pattern.RANDOM, 0)).withPreallocate(false);
        try (TrackedMachine tm = b.build(b.plan("soft", "soft", Map.of()), config)) {
            assertThrows(IllegalArgumentException.class, () -> tm.machine().systemMemory().registerListener(both));
        }
    }
}
