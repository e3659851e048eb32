package dev.ferry.memory.linux;

/**
 * A system call failed. The message names the call and the errno, e.g.
 * {@code "ioctl(KVM_CREATE_VM) failed: EACCES (13): Permission denied"}.
 */
public final class LinuxException extends RuntimeException {

    private static final long serialVersionUID = 1L;

    private final String call;
    private final int errno;

    public LinuxException(String call, int errno) {
        super(call + " failed: " + Errno.describe(errno));
        this.call = call;
        this.errno = errno;
    }

    /** @return the call that failed, e.g. {@code "ioctl(KVM_RUN)"} */
    public String call() {
        return call;
    }

    /** @return the errno the call left */
    public int errno() {
        return errno;
    }
}
