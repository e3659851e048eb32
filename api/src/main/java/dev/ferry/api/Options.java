package dev.ferry.api;

import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * String options given to a provider by the user ({@code --dirty-ring-size 4096} becomes
 * {@code dirty-ring-size=4096}), with typed getters whose errors name the option.
 */
public final class Options {

    private static final Options EMPTY = new Options(Map.of());

    private final Map<String, String> values;

    private Options(Map<String, String> values) {
        this.values = Map.copyOf(values);
    }

    /** @return options holding a copy of {@code values} */
    public static Options of(Map<String, String> values) {
        return values.isEmpty() ? EMPTY : new Options(values);
    }

    /** @return no options */
    public static Options empty() {
        return EMPTY;
    }

    /** @return the raw value of {@code name}, if given */
    public Optional<String> get(String name) {
        return Optional.ofNullable(values.get(name));
    }

    /** @return the names of every option given */
    public Set<String> names() {
        return values.keySet();
    }

    /**
     * Rejects every option outside {@code known}, naming them all: for a provider's own check in
     * {@code requirements} (the engine drops options no provider declares before they get there).
     *
     * @param owner what refuses them, e.g. {@code "tracker kvm-dirtylog"}
     * @param usage how the known ones read, e.g. {@code "its option is manual-protect=on|off"}
     * @throws IllegalArgumentException "OWNER does not understand A, B; USAGE"
     */
    public void requireOnly(Set<String> known, String owner, String usage) {
        Set<String> unknown = new TreeSet<>(values.keySet());
        unknown.removeAll(known);
        if (!unknown.isEmpty()) {
            throw new IllegalArgumentException(owner + " does not understand " + String.join(", ", unknown) + "; " + usage);
        }
    }

    /**
     * @return the value of {@code name} as a long, or {@code fallback} if not given
     * @throws IllegalArgumentException naming the option if the value is not an integer
     */
    public long getLong(String name, long fallback) {
        String v = values.get(name);
        if (v == null) {
            return fallback;
        }
        try {
            return Long.parseLong(v.trim());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("option " + name + " must be an integer, got '" + v + "'");
        }
    }

    /**
     * @return the value of {@code name} as a boolean, or {@code fallback} if not given
     * @throws IllegalArgumentException naming the option if the value is not true/false/on/off
     */
    public boolean getBoolean(String name, boolean fallback) {
        String v = values.get(name);
        if (v == null) {
            return fallback;
        }
        return switch (v.trim().toLowerCase(java.util.Locale.ROOT)) {
            case "true", "on", "yes", "1" -> true;
            case "false", "off", "no", "0" -> false;
            default -> throw new IllegalArgumentException("option " + name + " must be on or off, got '" + v + "'");
        };
    }

    @Override
    public String toString() {
        return new TreeMap<>(values).toString();
    }
}
