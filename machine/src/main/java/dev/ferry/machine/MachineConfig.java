package dev.ferry.machine;

import dev.ferry.machine.workload.Workload;

import java.util.Map;
import java.util.Objects;

/**
 * How to build a machine.
 *
 * @param ramSize               bytes of guest RAM (a multiple of 2 MiB)
 * @param vcpus                 number of vCPUs
 * @param workload              what the vCPUs do
 * @param acceleratorProperties accelerator properties, e.g. {@code dirty-ring-size=4096}
 * @param preallocate           fault all guest RAM in at creation (QEMU's -mem-prealloc)
 * @param deviceMemory          bytes at the top of guest RAM set aside for devices' rings and buffers,
 *                              kept out of the workload's working set (a multiple of 4096)
 */
public record MachineConfig(long ramSize, int vcpus, Workload workload, Map<String, String> acceleratorProperties,
                            boolean preallocate, long deviceMemory) {

    /** Guest RAM is handed to accelerators in 2 MiB units (huge-page-sized, as KVM guests map it). */
    public static final long RAM_ALIGN = 2L << 20;
    /** Upper bound on vCPUs; the host has few cores, and each vCPU is a thread. */
    public static final int MAX_VCPUS = 64;

    public MachineConfig {
        Objects.requireNonNull(workload, "workload");
        acceleratorProperties = Map.copyOf(acceleratorProperties);
        if (ramSize < RAM_ALIGN || ramSize % RAM_ALIGN != 0) {
            throw new IllegalArgumentException("memory size must be a positive multiple of 2 MiB, got " + ramSize + " bytes");
        }
        if (vcpus < 1 || vcpus > MAX_VCPUS) {
            throw new IllegalArgumentException("vCPU count must be 1 to " + MAX_VCPUS + ", got " + vcpus);
        }
        workload.workingSetSize(ramSize); // validates that the working set fits
        if (deviceMemory < 0 || deviceMemory % Workload.PAGE_SIZE != 0 || deviceMemory >= ramSize) {
            throw new IllegalArgumentException("devices ask for " + deviceMemory + " bytes of guest RAM; "
                    + "that must be a multiple of 4096 below the RAM size " + ramSize);
        }
    }

    /** A configuration without device memory. */
    public MachineConfig(long ramSize, int vcpus, Workload workload, Map<String, String> acceleratorProperties,
                         boolean preallocate) {
        this(ramSize, vcpus, workload, acceleratorProperties, preallocate, 0);
    }

    /** @return a configuration with preallocated RAM and no accelerator property */
    public static MachineConfig of(long ramSize, int vcpus, Workload workload) {
        return new MachineConfig(ramSize, vcpus, workload, Map.of(), true);
    }

    /** @return this configuration with other accelerator properties */
    public MachineConfig withAcceleratorProperties(Map<String, String> properties) {
        return new MachineConfig(ramSize, vcpus, workload, properties, preallocate, deviceMemory);
    }

    /** @return this configuration with preallocation on or off */
    public MachineConfig withPreallocate(boolean on) {
        return new MachineConfig(ramSize, vcpus, workload, acceleratorProperties, on, deviceMemory);
    }

    /** @return this configuration with {@code bytes} of guest RAM set aside for devices */
    public MachineConfig withDeviceMemory(long bytes) {
        return new MachineConfig(ramSize, vcpus, workload, acceleratorProperties, preallocate, bytes);
    }

    /** @return this configuration with another workload */
    public MachineConfig withWorkload(Workload w) {
        return new MachineConfig(ramSize, vcpus, w, acceleratorProperties, preallocate, deviceMemory);
    }
}
