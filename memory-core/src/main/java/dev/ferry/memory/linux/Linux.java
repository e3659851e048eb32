package dev.ferry.memory.linux;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;

/**
 * The few Linux system calls Ferry makes, through the FFM API. Every call captures errno and
 * turns a failure into a {@link LinuxException} naming the call; callers never see -1.
 * Constants are from the x86-64 uapi headers (asm-generic/mman-common.h, linux/memfd.h,
 * asm-generic/fcntl.h).
 */
public final class Linux {

    public static final int O_RDONLY = 0;
    public static final int O_RDWR = 2;
    public static final int O_CLOEXEC = 0x80000;
    public static final int PROT_READ = 1;
    public static final int PROT_WRITE = 2;
    public static final int MAP_SHARED = 1;
    public static final int MAP_PRIVATE = 2;
    public static final int MAP_ANONYMOUS = 0x20;
    public static final int MAP_NORESERVE = 0x4000;
    public static final int MFD_CLOEXEC = 1;
    /** madvise advice that frees the pages of a shared mapping (mm/madvise.c). */
    public static final int MADV_REMOVE = 9;
    /** madvise advice that faults pages in writable (Linux 5.14+), as QEMU's qemu_prealloc_mem uses. */
    public static final int MADV_POPULATE_WRITE = 23;

    private static final Linker LINKER = Linker.nativeLinker();
    private static final StructLayout CAPTURE = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO = CAPTURE.varHandle(MemoryLayout.PathElement.groupElement("errno"));
    private static final long MAP_FAILED = -1L;

    private static final MethodHandle OPEN = downcall("open",
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT));
    private static final MethodHandle CLOSE = downcall("close",
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT));
    private static final MethodHandle IOCTL_PTR = downcall("ioctl",
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG, ValueLayout.ADDRESS));
    private static final MethodHandle IOCTL_LONG = downcall("ioctl",
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG));
    private static final MethodHandle MMAP = downcall("mmap",
            FunctionDescriptor.of(ValueLayout.ADDRESS, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT,
                    ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG));
    private static final MethodHandle MUNMAP = downcall("munmap",
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG));
    private static final MethodHandle MADVISE = downcall("madvise",
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT));
    private static final MethodHandle MEMFD_CREATE = downcall("memfd_create",
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT));
    private static final MethodHandle FTRUNCATE = downcall("ftruncate",
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG));

    // errno is per thread: each thread captures into its own small buffer.
    private static final ThreadLocal<MemorySegment> ERRNO_BUFFER =
            ThreadLocal.withInitial(() -> Arena.global().allocate(CAPTURE));

    private Linux() {
    }

    private static MethodHandle downcall(String name, FunctionDescriptor descriptor) {
        MemorySegment symbol = LINKER.defaultLookup().find(name)
                .orElseThrow(() -> new UnsatisfiedLinkError("libc has no " + name));
        return LINKER.downcallHandle(symbol, descriptor, Linker.Option.captureCallState("errno"));
    }

    private static int errno(MemorySegment capture) {
        return (int) ERRNO.get(capture, 0L);
    }

    /** @return a file descriptor for {@code path} */
    public static int open(String path, int flags) {
        MemorySegment err = ERRNO_BUFFER.get();
        try (Arena arena = Arena.ofConfined()) {
            int fd = (int) OPEN.invokeExact(err, arena.allocateFrom(path), flags);
            if (fd < 0) {
                throw new LinuxException("open(" + path + ")", errno(err));
            }
            return fd;
        } catch (LinuxException e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
    }

    /** Closes {@code fd}; errors are ignored, as the descriptor is gone either way. */
    public static void close(int fd) {
        try {
            int ignored = (int) CLOSE.invokeExact(ERRNO_BUFFER.get(), fd);
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
    }

    /**
     * ioctl with a pointer argument.
     *
     * @param name the request's name, for the error message
     * @return the call's non-negative result
     */
    public static int ioctl(int fd, long request, MemorySegment arg, String name) {
        MemorySegment err = ERRNO_BUFFER.get();
        int r;
        try {
            r = (int) IOCTL_PTR.invokeExact(err, fd, request, arg);
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
        if (r < 0) {
            throw new LinuxException("ioctl(" + name + ")", errno(err));
        }
        return r;
    }

    /**
     * ioctl with an integer argument.
     *
     * @param name the request's name, for the error message
     * @return the call's non-negative result
     */
    public static int ioctl(int fd, long request, long arg, String name) {
        MemorySegment err = ERRNO_BUFFER.get();
        int r;
        try {
            r = (int) IOCTL_LONG.invokeExact(err, fd, request, arg);
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
        if (r < 0) {
            throw new LinuxException("ioctl(" + name + ")", errno(err));
        }
        return r;
    }

    /**
     * ioctl with an integer argument that reports failure as a negative errno instead of
     * throwing, for calls whose failure is an expected outcome (KVM_RUN interrupted by a signal).
     *
     * @return the call's result, or {@code -errno}
     */
    public static int ioctlOrErrno(int fd, long request, long arg) {
        MemorySegment err = ERRNO_BUFFER.get();
        try {
            int r = (int) IOCTL_LONG.invokeExact(err, fd, request, arg);
            return r < 0 ? -errno(err) : r;
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
    }

    /**
     * Maps {@code length} bytes of {@code fd} (or anonymous memory with fd -1).
     *
     * @return the mapping, {@code length} bytes long; release it with {@link #munmap}
     */
    public static MemorySegment mmap(long length, int prot, int flags, int fd, long offset) {
        MemorySegment err = ERRNO_BUFFER.get();
        MemorySegment addr;
        try {
            addr = (MemorySegment) MMAP.invokeExact(err, MemorySegment.NULL, length, prot, flags, fd, offset);
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
        if (addr.address() == MAP_FAILED) {
            throw new LinuxException("mmap(" + length + " bytes)", errno(err));
        }
        return addr.reinterpret(length);
    }

    /** Unmaps a mapping made by {@link #mmap}. */
    public static void munmap(MemorySegment mapping) {
        MemorySegment err = ERRNO_BUFFER.get();
        int r;
        try {
            r = (int) MUNMAP.invokeExact(err, mapping, mapping.byteSize());
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
        if (r < 0) {
            throw new LinuxException("munmap", errno(err));
        }
    }

    /** madvise over a whole mapping or a page-aligned part of it. */
    public static void madvise(MemorySegment range, int advice) {
        MemorySegment err = ERRNO_BUFFER.get();
        int r;
        try {
            r = (int) MADVISE.invokeExact(err, range, range.byteSize(), advice);
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
        if (r < 0) {
            throw new LinuxException("madvise(" + advice + ")", errno(err));
        }
    }

    /** @return an anonymous shared-memory file descriptor (memfd_create(2)) */
    public static int memfdCreate(String name, int flags) {
        MemorySegment err = ERRNO_BUFFER.get();
        try (Arena arena = Arena.ofConfined()) {
            int fd = (int) MEMFD_CREATE.invokeExact(err, arena.allocateFrom(name), flags);
            if (fd < 0) {
                throw new LinuxException("memfd_create(" + name + ")", errno(err));
            }
            return fd;
        } catch (LinuxException e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
    }

    /** Sets the size of {@code fd}. */
    public static void ftruncate(int fd, long size) {
        MemorySegment err = ERRNO_BUFFER.get();
        int r;
        try {
            r = (int) FTRUNCATE.invokeExact(err, fd, size);
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
        if (r < 0) {
            throw new LinuxException("ftruncate(" + size + ")", errno(err));
        }
    }
}
