package dev.ferry.migration.bootstrap;

import dev.ferry.api.DirtyTracker;
import dev.ferry.machine.Machine;

import java.util.List;

/**
 * A machine with its trackers registered on its system address space. Closing it unregisters
 * and closes the trackers, then the machine.
 *
 * @param machine  the machine
 * @param trackers its trackers
 * @param plan     how it was chosen
 * @param devices  the devices plugged into it, as requested (the destination plugs the same)
 */
public record TrackedMachine(Machine machine, List<DirtyTracker> trackers, Plan plan, List<DeviceRequest> devices)
        implements AutoCloseable {

    public TrackedMachine {
        trackers = List.copyOf(trackers);
        devices = List.copyOf(devices);
    }

    @Override
    public void close() {
        machine.pause();
        for (DirtyTracker t : trackers.reversed()) {
            machine.systemMemory().unregisterListener(t);
            t.close();
        }
        machine.close();
    }
}
