package dev.ferry.vhost;

import dev.ferry.api.Device;
import dev.ferry.api.DeviceProvider;
import dev.ferry.api.MachineContext;
import dev.ferry.api.Options;

import java.util.Set;

/** What the two vhost device providers share: options, guest memory, creation. */
abstract class VhostProvider implements DeviceProvider {

    private final VhostDevice.Kind kind;

    VhostProvider(VhostDevice.Kind kind) {
        this.kind = kind;
    }

    @Override
    public final String name() {
        return kind.deviceName();
    }

    @Override
    public final Set<String> optionNames() {
        return VhostOptions.NAMES;
    }

    @Override
    public final long guestMemory(Options options) {
        return kind.guestMemory(VhostOptions.parse(options, kind.defaultBackend()));
    }

    @Override
    public final Device create(String id, MachineContext machine) {
        return VhostDevice.create(kind, id, machine);
    }

    /** The options, for descriptions. */
    static final String OPTIONS = "(options: queues, rate, pattern, buffers, queue-size, backend, log, log-scan)";
}
