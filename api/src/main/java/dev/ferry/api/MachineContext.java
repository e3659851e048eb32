package dev.ferry.api;

import java.util.List;
import java.util.Optional;

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
}
