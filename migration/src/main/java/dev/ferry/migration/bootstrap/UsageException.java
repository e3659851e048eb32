package dev.ferry.migration.bootstrap;

/**
 * The user asked for something that cannot be done as asked (an unknown tracker, a bad option,
 * trackers that need different accelerators). The message is one line saying what was wrong
 * and what to do; the command line prints it and exits with status 2.
 */
public final class UsageException extends RuntimeException {

    private static final long serialVersionUID = 1L;

    public UsageException(String message) {
        super(message);
    }
}
