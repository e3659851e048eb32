package dev.ferry.migration.bootstrap;

import dev.ferry.api.DirtyTrackerProvider;
import dev.ferry.api.Options;
import dev.ferry.machine.AcceleratorProvider;

import java.util.List;
import java.util.Map;

/**
 * The resolved choice of accelerator and trackers, made before the machine exists because
 * trackers shape how the accelerator is set up.
 *
 * @param accelerator           the accelerator to build the machine with
 * @param trackers              the trackers to attach, in the order asked for
 * @param trackerOptions        each tracker's own options
 * @param acceleratorProperties what the trackers need of the accelerator
 */
public record Plan(AcceleratorProvider accelerator, List<DirtyTrackerProvider> trackers,
                   Map<String, Options> trackerOptions, Map<String, String> acceleratorProperties) {

    public Plan {
        trackers = List.copyOf(trackers);
        trackerOptions = Map.copyOf(trackerOptions);
        acceleratorProperties = Map.copyOf(acceleratorProperties);
    }

    /** @return the tracker names, comma-separated */
    public String trackerNames() {
        return String.join(",", trackers.stream().map(DirtyTrackerProvider::name).toList());
    }
}
