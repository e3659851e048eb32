package dev.ferry.migration.bootstrap;

import dev.ferry.api.DeviceProvider;
import dev.ferry.api.Options;

/**
 * A device to plug into a machine Ferry builds.
 *
 * @param provider makes it
 * @param id       its id within the machine, e.g. {@code vhost-net0}
 * @param options  its own options
 */
public record DeviceRequest(DeviceProvider provider, String id, Options options) {
}
