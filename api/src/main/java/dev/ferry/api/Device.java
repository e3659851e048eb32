package dev.ferry.api;

import dev.ferry.api.vmstate.VMState;

import java.util.List;
import java.util.Map;

/**
 * An emulated device: state that migrates with the machine (QEMU's non-iterable device state)
 * and, for a device whose backend writes guest memory itself, a source of dirty pages.
 *
 * <h2>Lifecycle</h2>
 * The engine creates the device with {@link DeviceProvider#create}, registers its
 * {@link #memoryListeners()} on the system address space (so they see the topology replayed as
 * region adds), then calls {@link #start()} when the vCPUs start and {@link #stop()} when they
 * stop (QEMU's VM state change handlers). On unplug or machine shutdown it stops the device,
 * unregisters the listeners, and calls {@link #close()}.
 *
 * <h2>Dirty tracking</h2>
 * A device that writes guest RAM behind the accelerator's back (DMA, as vhost backends do)
 * must report those writes, or the destination gets stale pages. It does so through its own
 * memory listeners, exactly as a tracker does: on {@link MemoryListener#logSync} it marks what it
 * wrote in the section's {@link RamBlock}. Once {@link #stop()} has returned the device writes
 * nothing more until {@link #start()}, so the migration's final sync, made after the stop, sees
 * every write.
 *
 * <h2>State</h2>
 * The source saves the state ({@link #vmstate()}) after the vCPUs and devices stop; the
 * destination loads every device's state inside one memory transaction before the vCPUs resume,
 * so that post-load hooks that map BARs or enable regions cost one topology update in all.
 */
public interface Device extends AutoCloseable {

    /** @return the device's id, unique within a machine, e.g. {@code "vhost-net0"} */
    String id();

    /**
     * The device's state and how it migrates: a description bound to the object that holds the
     * state (usually the device itself). The source saves it after the device has stopped; the
     * destination, which created its device from the same provider and options, loads the
     * source's state into it before starting it.
     *
     * @return the state; called once per save or load
     */
    VMState<?> vmstate();

    /**
     * The listeners the engine registers on the system address space for as long as the device
     * is plugged: how a device keeps its view of guest memory (region add and delete) and takes
     * part in dirty logging (log start, sync, stop). Called once, after creation.
     *
     * @return the listeners, often one per backend queue (a vhost dev each); empty by default
     */
    default List<MemoryListener> memoryListeners() {
        return List.of();
    }

    /**
     * The machine boots with this device: do what the firmware and the guest driver would have
     * done by now (assign and enable the BARs, set up the queues). Not called on a machine that
     * waits for an incoming migration: there the device stays as reset until its state is loaded,
     * and its post-load does the same from the source's state, as QEMU's devices do under
     * {@code -incoming}.
     */
    default void boot() {
    }

    /** The machine starts or resumes running: the backend may start writing guest memory. */
    default void start() {
    }

    /**
     * The machine stops. When this returns the device writes no guest memory until
     * {@link #start()}; writes made before are visible to the next log sync.
     */
    default void stop() {
    }

    /** @return counters for reports, by name; empty by default */
    default Map<String, Long> statistics() {
        return Map.of();
    }

    /** Releases what the device holds; it is stopped and its listeners unregistered already. */
    @Override
    default void close() {
    }
}
