package dev.ferry.api;

import java.util.List;
import java.util.Optional;
import java.util.function.Supplier;

/**
 * What a plugin sees of the machine it is created for. The engine builds one per plugin
 * instance, carrying that plugin's own options.
 */
public interface MachineContext {

    /** @return the accelerator's name, e.g. {@code "kvm"} or {@code "soft"} */
    String accelerator();

    /** @return the number of vCPUs */
    int vcpus();

    /** @return the machine's RAM blocks */
    List<RamBlock> ramBlocks();

    /** @return the options the user gave this plugin */
    Options options();

    /**
     * Looks up an engine service by type: the accelerator's own interface (a KVM tracker asks
     * for the KVM VM), the machine's clock, and the like. Plugins that need a service the
     * machine lacks should have reported themselves unavailable or thrown from
     * {@link DirtyTrackerProvider#requirements}.
     *
     * @return the service, if this machine has one of that type
     */
    <T> Optional<T> lookup(Class<T> type);

    /**
     * The guest RAM the machine set aside for this plugin instance: for a device, the rings and
     * buffers its guest driver would hand it ({@link DeviceProvider#guestMemory}). Reach it
     * through the RAM block that maps it (see {@link MemoryListener#regionAdd}).
     *
     * @return the range, absent if none was asked for
     */
    default Optional<GuestRange> deviceMemory() {
        return Optional.empty();
    }

    /**
     * An object that every plugin instance on this machine shares when they ask with the same
     * type: state that belongs to the machine and not to one instance (the vhost dirty logs,
     * one per backend type, that all vhost devices of a machine use). Created on first use.
     *
     * @param type   the key and the object's type
     * @param create makes the object on first use
     * @return the machine's object of that type
     */
    <T> T shared(Class<T> type, Supplier<? extends T> create);

    /**
     * Assigns guest-physical space for one of the device's BARs, as the firmware does when it
     * enumerates a PCI bus: above RAM, aligned to its size, never overlapping another BAR. A
     * machine hands out the same addresses for the same sequence of requests.
     *
     * @param size a power of two, at least 4096
     * @return the BAR's guest-physical address
     * @throws IllegalArgumentException if the size is not a power of two of at least 4096
     */
    long assignBar(long size);
}
