package dev.ferry.api;

import java.io.DataInput;
import java.io.DataOutput;
import java.io.IOException;

/**
 * An emulated device whose state migrates with the machine (QEMU's non-iterable device state).
 * The source saves it after the vCPUs stop; the destination loads it, all devices inside one
 * memory transaction, before the vCPUs resume.
 */
public interface Device {

    /** @return the device's id, unique within a machine, e.g. {@code "virtio-net0"} */
    String id();

    /** @return the version of the state format {@link #save} writes */
    int version();

    /** Writes the device state. */
    void save(DataOutput out) throws IOException;

    /**
     * Reads state written by {@link #save} of a source running format {@code version}.
     *
     * @throws IOException if the state is malformed; the device must then be left as it was
     */
    void load(DataInput in, int version) throws IOException;
}
