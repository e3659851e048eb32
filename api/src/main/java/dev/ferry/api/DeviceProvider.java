package dev.ferry.api;

/**
 * Makes devices of one kind; found with {@link java.util.ServiceLoader} under
 * {@code META-INF/services/dev.ferry.api.DeviceProvider}.
 */
public interface DeviceProvider {

    /** @return the device type's name, e.g. {@code "virtio-net"} */
    String name();

    /** @return one line saying what the device is */
    String description();

    /** @return whether the device works on this host; must not throw */
    default Availability probe() {
        return Availability.yes();
    }

    /**
     * Creates a device for a machine.
     *
     * @param id      the device's id within the machine
     * @param machine the machine, with this device's options
     */
    Device create(String id, MachineContext machine);
}
