package dev.ferry.machine.ivshmem;

import dev.ferry.api.Device;
import dev.ferry.api.DeviceProvider;
import dev.ferry.api.MachineContext;
import dev.ferry.api.Options;

import java.util.Set;

/** Device {@code ivshmem}: shared memory in a PCI BAR, mapped by firmware or by its state load. */
public final class IvshmemProvider implements DeviceProvider {

    @Override
    public String name() {
        return "ivshmem";
    }

    @Override
    public String description() {
        return "PCI shared memory (ivshmem-plain): a RAM block in BAR 2, mapped at boot or by its state load "
                + "(options: size, in KiB, a power of two, default 1024)";
    }

    @Override
    public Set<String> optionNames() {
        return Set.of("size");
    }

    @Override
    public long guestMemory(Options options) {
        size(options); // validates
        return 0;
    }

    @Override
    public Device create(String id, MachineContext machine) {
        return IvshmemDevice.create(id, machine);
    }

    static long size(Options o) {
        long kib = o.getLong("size", 1024);
        if (kib < 4 || kib > (1 << 20) || Long.bitCount(kib) != 1) {
            throw new IllegalArgumentException("size must be a power of two from 4 to 1048576 KiB, got " + kib);
        }
        return kib * 1024;
    }
}
