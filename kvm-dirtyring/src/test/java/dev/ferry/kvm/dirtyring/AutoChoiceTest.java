package dev.ferry.kvm.dirtyring;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.api.Availability;
import dev.ferry.api.DirtyTrackerProvider;
import dev.ferry.api.Options;

import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.ServiceLoader;
import java.util.function.Function;

import org.junit.jupiter.api.Test;

/**
 * {@code --trackers auto} among the trackers on the class path (kvm-dirtyring, kvm-dirtylog, soft),
 * by the rule of {@link DirtyTrackerProvider#autoPriority()}: the available tracker with the
 * highest positive priority whose requirements accept the accelerator. Availability is stated by
 * the test (there is no KVM here); priorities and requirements are the providers' own. The
 * bootstrap's implementation of the rule is tested in the migration module.
 */
class AutoChoiceTest {

    private static String auto(Function<String, Availability> availability) {
        List<DirtyTrackerProvider> all = ServiceLoader.load(DirtyTrackerProvider.class).stream()
                .map(ServiceLoader.Provider::get).toList();
        return all.stream()
                .filter(p -> p.autoPriority() > 0 && availability.apply(p.name()).available())
                .filter(p -> {
                    try {
                        return p.requirements(Options.empty()).accepts("kvm");
                    } catch (IllegalArgumentException e) {
                        return false;
                    }
                })
                .max(Comparator.comparingInt(DirtyTrackerProvider::autoPriority))
                .map(DirtyTrackerProvider::name)
                .orElse("none");
    }

    @Test
    void allThreeAreOnTheClassPath() {
        List<String> names = ServiceLoader.load(DirtyTrackerProvider.class).stream()
                .map(p -> p.get().name()).sorted().toList();
        assertEquals(List.of("kvm-dirtylog", "kvm-dirtyring", "soft"), names);
    }

    @Test
    void autoPrefersTheRingWhereItIsOffered() {
        assertEquals("kvm-dirtyring", auto(name -> Availability.yes()));
    }

    @Test
    void autoFallsBackToTheBitmapWithoutTheRing() {
        Map<String, Availability> host = Map.of("kvm-dirtyring", Availability.no("no dirty ring"),
                "kvm-dirtylog", Availability.yes(), "soft", Availability.yes());
        assertEquals("kvm-dirtylog", auto(host::get));
    }

    @Test
    void hereTheRealProbesDecide() {
        String chosen = auto(name -> ServiceLoader.load(DirtyTrackerProvider.class).stream()
                .map(ServiceLoader.Provider::get).filter(p -> p.name().equals(name)).findFirst().orElseThrow().probe());
        Availability ring = new KvmDirtyRingProvider().probe();
        if (ring.available()) {
            assertEquals("kvm-dirtyring", chosen);
        } else {
            assertTrue(List.of("kvm-dirtylog", "soft", "none").contains(chosen), chosen);
        }
    }
}
