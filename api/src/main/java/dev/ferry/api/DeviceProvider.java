package dev.ferry.api;

import java.util.Set;

/**
 * Makes devices of one kind; found with {@link java.util.ServiceLoader} under
 * {@code META-INF/services/dev.ferry.api.DeviceProvider}. A provider needs a public no-argument
 * constructor and must be cheap to construct.
 *
 * <p>Lifecycle: the engine calls {@link #probe()}, then {@link #guestMemory(Options)} before it
 * builds the machine (so the machine can set that much guest RAM aside for the device), then
 * {@link #create} once the machine exists.
 */
public interface DeviceProvider {

    /** @return the device type's name as users type it, e.g. {@code "vhost-net"} */
    String name();

    /** @return one line saying what the device is */
    String description();

    /** @return whether the device works on this host; must not throw */
    default Availability probe() {
        return Availability.yes();
    }

    /** @return the option names this device understands; others are rejected before use */
    default Set<String> optionNames() {
        return Set.of();
    }

    /**
     * Validates the options and says how much guest RAM the device's guest driver would hand it
     * (its rings and buffers). The machine sets that much aside, out of the guest workload's
     * way, and gives it to the device as {@link MachineContext#deviceMemory()}.
     *
     * @return bytes, a multiple of 4096; 0 by default
     * @throws IllegalArgumentException with a one-line message if an option is invalid
     */
    default long guestMemory(Options options) {
        return 0;
    }

    /**
     * Creates a device for a machine.
     *
     * @param id      the device's id within the machine
     * @param machine the machine, with this device's options and guest memory
     * @throws IllegalArgumentException with a one-line message if an option is invalid
     */
    Device create(String id, MachineContext machine);
}
