package dev.ferry.api;

/**
 * A tracker could not report every dirty page. Migration stops with this message rather than go
 * on with pages possibly missing.
 */
public class DirtyTrackerException extends RuntimeException {

    private static final long serialVersionUID = 1L;

    /** @param message what went wrong, naming the tracker */
    public DirtyTrackerException(String message) {
        super(message);
    }

    /** @param message what went wrong, naming the tracker; @param cause the underlying error */
    public DirtyTrackerException(String message, Throwable cause) {
        super(message, cause);
    }
}
