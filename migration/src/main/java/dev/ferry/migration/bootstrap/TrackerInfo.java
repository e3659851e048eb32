package dev.ferry.migration.bootstrap;

/**
 * A discovered tracker as {@code ferry trackers} lists it.
 *
 * @param name        the tracker's name
 * @param available   whether it works on this host
 * @param reason      why not, when unavailable
 * @param description one line on what it does
 */
public record TrackerInfo(String name, boolean available, String reason, String description) {
}
