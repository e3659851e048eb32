package dev.ferry.api;

import java.util.Objects;

/**
 * Whether a provider can work on this host, and if not, why (a sentence a user can act on).
 *
 * @param available whether the provider works here
 * @param reason    why not; empty when available
 */
public record Availability(boolean available, String reason) {

    public Availability {
        Objects.requireNonNull(reason, "reason");
        if (!available && reason.isBlank()) {
            throw new IllegalArgumentException("an unavailable provider must say why");
        }
    }

    /** @return a provider that works here */
    public static Availability yes() {
        return new Availability(true, "");
    }

    /** @return a provider that does not work here, for the given reason */
    public static Availability no(String reason) {
        return new Availability(false, reason);
    }
}
