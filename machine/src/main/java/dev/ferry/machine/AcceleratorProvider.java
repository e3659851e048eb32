package dev.ferry.machine;

import dev.ferry.api.Availability;

import java.util.Map;
import java.util.Set;

/**
 * Makes accelerators of one kind ({@code soft}, {@code kvm}); found with
 * {@link java.util.ServiceLoader}. Engine-internal: accelerators are part of Ferry, trackers
 * are the plugins.
 */
public interface AcceleratorProvider {

    /** @return the accelerator's name as users type it */
    String name();

    /** @return one line saying what it is */
    String description();

    /** @return whether it works on this host; must not throw */
    Availability probe();

    /** @return preference for {@code --accel auto}: the available provider with the highest wins */
    int autoPriority();

    /** @return the accelerator properties this provider understands */
    default Set<String> propertyNames() {
        return Set.of();
    }

    /**
     * Creates an accelerator for one machine.
     *
     * @param properties accelerator properties from the trackers' requirements
     * @throws IllegalArgumentException with a one-line message for a bad property
     */
    Accelerator create(Map<String, String> properties);
}
