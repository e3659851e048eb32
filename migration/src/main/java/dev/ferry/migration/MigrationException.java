package dev.ferry.migration;

/** A migration failed; the message says why, in one line. */
public final class MigrationException extends Exception {

    private static final long serialVersionUID = 1L;

    public MigrationException(String message) {
        super(message);
    }

    public MigrationException(String message, Throwable cause) {
        super(message, cause);
    }
}
