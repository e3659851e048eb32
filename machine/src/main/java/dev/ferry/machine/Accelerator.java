package dev.ferry.machine;

import dev.ferry.memory.AddressSpace;
import dev.ferry.memory.MemorySystem;

import java.util.Optional;

/**
 * Runs a machine's vCPUs (QEMU's accelerator: TCG or KVM). It learns the guest's memory through
 * a memory listener it registers in {@link #attach}, and runs one {@link VcpuLoop} per vCPU.
 */
public interface Accelerator extends AutoCloseable {

    /** @return the accelerator's name */
    String name();

    /** Attaches to the machine's memory, before any vCPU exists (register the memslot listener). */
    void attach(MemorySystem memory, AddressSpace systemMemory);

    /**
     * Guest RAM from address 0 that the accelerator keeps for itself (the KVM guest's code and
     * page tables); the workload's working set must start above it.
     *
     * @return bytes reserved at the bottom of RAM
     */
    default long reservedRamBytes() {
        return 0;
    }

    /** @return the loop of vCPU {@code index}, which will run {@code setup}'s workload */
    VcpuLoop createVcpu(int index, VcpuSetup setup);

    /**
     * Accelerator-specific services for trackers (the KVM VM, the software dirty log).
     *
     * @return the service, if this accelerator has one of that type
     */
    default <T> Optional<T> lookup(Class<T> type) {
        return type.isInstance(this) ? Optional.of(type.cast(this)) : Optional.empty();
    }

    /** Releases the accelerator's resources; the vCPUs have stopped. */
    @Override
    void close();
}
