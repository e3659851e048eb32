package dev.ferry.examples.uffd;

/**
 * A userfaultfd or PAGEMAP_SCAN operation failed. The message names the call, the errno and, where
 * the cause is usually the same one, what to do about it.
 */
public final class UffdException extends RuntimeException {

    private static final long serialVersionUID = 1L;

    /** The errno of the failed call, 0 if none. */
    private final int errno;

    /**
     * Creates the exception.
     *
     * @param message what failed, and why
     * @param errno the errno the failing call left behind, or 0 if there was none
     */
    public UffdException(String message, int errno) {
        super(message);
        this.errno = errno;
    }

    /**
     * The errno the failing call left behind, for callers that react to particular causes.
     *
     * @return the errno of the failed call, or 0 if the failure was not a failed system call
     */
    public int errno() {
        return errno;
    }
}
