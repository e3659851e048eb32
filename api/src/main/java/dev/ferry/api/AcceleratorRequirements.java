package dev.ferry.api;

import java.util.Map;
import java.util.Objects;
import java.util.Set;

/**
 * What a tracker needs from the accelerator before the machine is built. Some set-up cannot be
 * changed later (KVM's dirty ring must be enabled before the first vCPU exists), so tracker
 * choice comes before machine creation and the engine applies these first.
 *
 * @param accelerators names of accelerators the tracker works with; empty means any
 * @param properties   accelerator properties to set, e.g. {@code dirty-ring-size=4096}
 */
public record AcceleratorRequirements(Set<String> accelerators, Map<String, String> properties) {

    public AcceleratorRequirements {
        accelerators = Set.copyOf(Objects.requireNonNull(accelerators, "accelerators"));
        properties = Map.copyOf(Objects.requireNonNull(properties, "properties"));
    }

    /** @return no requirement at all */
    public static AcceleratorRequirements none() {
        return new AcceleratorRequirements(Set.of(), Map.of());
    }

    /** @return a requirement for one of the named accelerators, with no property */
    public static AcceleratorRequirements accelerator(String... names) {
        return new AcceleratorRequirements(Set.of(names), Map.of());
    }

    /** @return whether the tracker works with the named accelerator */
    public boolean accepts(String accelerator) {
        return accelerators.isEmpty() || accelerators.contains(accelerator);
    }
}
