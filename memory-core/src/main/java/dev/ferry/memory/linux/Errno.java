package dev.ferry.memory.linux;

/** errno values Ferry reacts to (asm-generic/errno-base.h), and their names for messages. */
public final class Errno {

    public static final int EPERM = 1;
    public static final int ENOENT = 2;
    public static final int EINTR = 4;
    public static final int EIO = 5;
    public static final int EBADF = 9;
    public static final int EAGAIN = 11;
    public static final int ENOMEM = 12;
    public static final int EACCES = 13;
    public static final int EFAULT = 14;
    public static final int EBUSY = 16;
    public static final int EEXIST = 17;
    public static final int ENODEV = 19;
    public static final int EINVAL = 22;
    public static final int ENOSPC = 28;
    public static final int ENOSYS = 38;
    public static final int ENOTTY = 25;

    private Errno() {
    }

    /** @return e.g. {@code "EACCES (13): Permission denied"} */
    public static String describe(int errno) {
        String name = switch (errno) {
            case EPERM -> "EPERM: Operation not permitted";
            case ENOENT -> "ENOENT: No such file or directory";
            case EINTR -> "EINTR: Interrupted system call";
            case EIO -> "EIO: I/O error";
            case EBADF -> "EBADF: Bad file descriptor";
            case EAGAIN -> "EAGAIN: Resource temporarily unavailable";
            case ENOMEM -> "ENOMEM: Cannot allocate memory";
            case EACCES -> "EACCES: Permission denied";
            case EFAULT -> "EFAULT: Bad address";
            case EBUSY -> "EBUSY: Device or resource busy";
            case EEXIST -> "EEXIST: File exists";
            case ENODEV -> "ENODEV: No such device";
            case EINVAL -> "EINVAL: Invalid argument";
            case ENOTTY -> "ENOTTY: Inappropriate ioctl for device";
            case ENOSPC -> "ENOSPC: No space left on device";
            case ENOSYS -> "ENOSYS: Function not implemented";
            default -> "errno " + errno;
        };
        return name + " (" + errno + ")";
    }
}
