package dev.ferry.migration.bootstrap;

/**
 * A discovered tracker or device type, as {@code ferry trackers} and {@code ferry devices} list it.
 *
 * @param name        the name users type
 * @param available   whether it works on this host
 * @param reason      why not, when unavailable
 * @param description one line on what it does
 */
public record PluginInfo(String name, boolean available, String reason, String description) {
}
