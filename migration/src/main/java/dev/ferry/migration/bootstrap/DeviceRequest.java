package dev.ferry.migration.bootstrap;

import dev.ferry.api.DeviceProvider;
import dev.ferry.api.Options;

/**
 * A device to plug into a machine Ferry builds.
 *
 * @param provider makes it
 * @param id       its id within the machine, e.g. {@code vhost-net0}
 * @param options  its own options
 * @param guestMemory bytes of guest RAM it asked for ({@link DeviceProvider#guestMemory}), set aside at the top of RAM
 */
public record DeviceRequest(DeviceProvider provider, String id, Options options, long guestMemory) {
}
