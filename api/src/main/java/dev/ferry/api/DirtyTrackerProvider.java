package dev.ferry.api;

import java.util.Set;

/**
 * Makes dirty trackers of one kind. Providers are found with {@link java.util.ServiceLoader}:
 * list the implementation in {@code META-INF/services/dev.ferry.api.DirtyTrackerProvider}. A
 * provider needs a public no-argument constructor and must be cheap to construct; probing the
 * host happens in {@link #probe()}.
 *
 * <p>Lifecycle: the engine calls {@link #probe()}, then {@link #requirements(Options)} before
 * it builds the machine, then {@link #create(MachineContext)} once the machine exists, and
 * registers the tracker as a memory listener of the system address space.
 */
public interface DirtyTrackerProvider {

    /** @return the tracker's name as users type it, e.g. {@code "kvm-dirtylog"} */
    String name();

    /** @return one line saying what the tracker does */
    String description();

    /**
     * Checks whether this tracker can work on this host (device nodes, permissions, kernel
     * capabilities). Must not throw.
     *
     * @return available, or unavailable with a reason a user can act on
     */
    Availability probe();

    /**
     * Preference when the user asks for {@code --trackers auto}: among the available trackers
     * that accept the chosen accelerator, the one with the highest priority is used. Zero or
     * less means never chosen automatically (the default: a plugin is used when asked for).
     *
     * @return the tracker's priority for automatic choice
     */
    default int autoPriority() {
        return 0;
    }

    /** @return the option names this tracker understands; others are rejected before use */
    default Set<String> optionNames() {
        return Set.of();
    }

    /**
     * Validates the options and states what the accelerator must provide.
     *
     * @throws IllegalArgumentException with a one-line message if an option is invalid
     */
    default AcceleratorRequirements requirements(Options options) {
        return AcceleratorRequirements.none();
    }

    /**
     * Creates a tracker for a machine that was built honouring {@link #requirements}.
     *
     * @throws DirtyTrackerException if the machine cannot be tracked after all
     */
    DirtyTracker create(MachineContext machine);
}
