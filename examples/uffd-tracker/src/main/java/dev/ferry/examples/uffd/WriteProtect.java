package dev.ferry.examples.uffd;

import static java.lang.foreign.MemoryLayout.PathElement.groupElement;
import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Cheap "which pages of these ranges were written since I last looked" for memory mapped in this
 * process, built on a userfaultfd in asynchronous write-protect mode ({@code UFFD_FEATURE_WP_ASYNC})
 * and the {@code PAGEMAP_SCAN} ioctl on {@code /proc/self/pagemap}; both need Linux 6.7 or later.
 *
 * <p>Use: {@link #register} a range once, {@link #protect} it to start from a clean slate, then call
 * {@link #collectWritten} whenever the pages written since the previous collect are wanted. A write
 * to a protected page takes one minor fault, which the kernel resolves by itself (no message, no
 * handler thread) by lifting the protection of that page; the scan reports pages whose protection
 * was lifted and puts it back in the same page-table walk.
 *
 * <p>What is seen: every write through <em>this process's mapping</em> of a registered range, by any
 * thread, by the kernel on the process's behalf (a {@code read(2)} into the buffer), and by KVM or
 * any other {@code get_user_pages} user writing through the same mapping. Pages never populated
 * before (a memfd that was not preallocated) are caught too ({@code UFFD_FEATURE_WP_UNPOPULATED},
 * and for shmem the kernel keeps a marker in the empty page-table entry). Not seen: writes through
 * another mapping of the same file (another process, or a second mapping here) and writes through
 * the file descriptor ({@code write(2)}, {@code fallocate(2)}): they never touch these page tables.
 *
 * <p>Threads: an instance is meant to be driven by one thread at a time, though calls may come from
 * different threads over its life. Every method is {@code synchronized}, so accidental concurrent use
 * is safe, merely serialized. Threads writing the tracked memory need no coordination at all.
 *
 * <p>Only Linux on x86-64 and aarch64 is supported (the ioctl encoding and syscall numbers are
 * those of these architectures). Run with {@code --enable-native-access} for this module.
 */
public final class WriteProtect implements AutoCloseable {

    // ---- include/uapi/asm-generic/ioctl.h: _IOC(dir, type, nr, size), as on x86-64 and arm64 ----
    private static final int IOC_WRITE = 1;
    private static final int IOC_READ = 2;

    // ---- include/uapi/linux/userfaultfd.h ----
    /** {@code UFFD_API}: the only userfaultfd API version there is. */
    private static final long UFFD_API = 0xAA;
    /** {@code UFFDIO}: the userfaultfd ioctl type, also {@code USERFAULTFD_IOC} for /dev/userfaultfd. */
    private static final int UFFDIO = 0xAA;
    private static final int _UFFDIO_REGISTER = 0x00;
    private static final int _UFFDIO_UNREGISTER = 0x01;
    private static final int _UFFDIO_WRITEPROTECT = 0x06;
    private static final int _UFFDIO_API = 0x3F;
    /** {@code UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1<<12)}: write-protect works on shmem (memfd) too. */
    static final long UFFD_FEATURE_WP_HUGETLBFS_SHMEM = 1L << 12;
    /** {@code UFFD_FEATURE_WP_UNPOPULATED (1<<13)}: protection also covers never-populated pages. */
    static final long UFFD_FEATURE_WP_UNPOPULATED = 1L << 13;
    /** {@code UFFD_FEATURE_WP_ASYNC (1<<15)}: the kernel resolves write-protect faults by itself. */
    static final long UFFD_FEATURE_WP_ASYNC = 1L << 15;
    /** {@code UFFDIO_REGISTER_MODE_WP ((__u64)1<<1)}. */
    private static final long UFFDIO_REGISTER_MODE_WP = 1L << 1;
    /** {@code UFFDIO_WRITEPROTECT_MODE_WP ((__u64)1<<0)}: set (not clear) the protection. */
    private static final long UFFDIO_WRITEPROTECT_MODE_WP = 1L << 0;

    private static final long FEATURES =
            UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED | UFFD_FEATURE_WP_HUGETLBFS_SHMEM;

    /** {@code struct uffdio_api { __u64 api; __u64 features; __u64 ioctls; }} */
    private static final StructLayout UFFDIO_API_ARG = MemoryLayout.structLayout(
            JAVA_LONG.withName("api"), JAVA_LONG.withName("features"), JAVA_LONG.withName("ioctls"));
    /** {@code struct uffdio_range { __u64 start; __u64 len; }} */
    private static final StructLayout UFFDIO_RANGE = MemoryLayout.structLayout(
            JAVA_LONG.withName("start"), JAVA_LONG.withName("len"));
    /** {@code struct uffdio_register { struct uffdio_range range; __u64 mode; __u64 ioctls; }} */
    private static final StructLayout UFFDIO_REGISTER_ARG = MemoryLayout.structLayout(
            UFFDIO_RANGE.withName("range"), JAVA_LONG.withName("mode"), JAVA_LONG.withName("ioctls"));
    /** {@code struct uffdio_writeprotect { struct uffdio_range range; __u64 mode; }} */
    private static final StructLayout UFFDIO_WRITEPROTECT_ARG = MemoryLayout.structLayout(
            UFFDIO_RANGE.withName("range"), JAVA_LONG.withName("mode"));

    /** {@code USERFAULTFD_IOC_NEW = _IO(USERFAULTFD_IOC, 0x00)} = 0xaa00, Linux 6.1+. */
    static final long USERFAULTFD_IOC_NEW = ioc(0, UFFDIO, 0x00, 0);
    /** {@code UFFDIO_API = _IOWR(UFFDIO, _UFFDIO_API, struct uffdio_api)} = 0xc018aa3f. */
    static final long UFFDIO_API = ioc(IOC_READ | IOC_WRITE, UFFDIO, _UFFDIO_API, UFFDIO_API_ARG.byteSize());
    /** {@code UFFDIO_REGISTER = _IOWR(UFFDIO, _UFFDIO_REGISTER, struct uffdio_register)} = 0xc020aa00. */
    static final long UFFDIO_REGISTER =
            ioc(IOC_READ | IOC_WRITE, UFFDIO, _UFFDIO_REGISTER, UFFDIO_REGISTER_ARG.byteSize());
    /**
     * {@code UFFDIO_UNREGISTER = _IOR(UFFDIO, _UFFDIO_UNREGISTER, struct uffdio_range)} = 0x8010aa01
     * (_IOR although the kernel reads it: a historical slip the header keeps).
     */
    static final long UFFDIO_UNREGISTER = ioc(IOC_READ, UFFDIO, _UFFDIO_UNREGISTER, UFFDIO_RANGE.byteSize());
    /** {@code UFFDIO_WRITEPROTECT = _IOWR(UFFDIO, _UFFDIO_WRITEPROTECT, struct uffdio_writeprotect)} = 0xc018aa06. */
    static final long UFFDIO_WRITEPROTECT =
            ioc(IOC_READ | IOC_WRITE, UFFDIO, _UFFDIO_WRITEPROTECT, UFFDIO_WRITEPROTECT_ARG.byteSize());

    // ---- include/uapi/linux/fs.h (Linux 6.7+) ----
    /** {@code PAGE_IS_WRITTEN (1 << 1)}: written since last write-protected. */
    private static final long PAGE_IS_WRITTEN = 1L << 1;
    /** {@code PM_SCAN_WP_MATCHING (1 << 0)}: write-protect the pages reported, in the same walk. */
    private static final long PM_SCAN_WP_MATCHING = 1L << 0;
    /** {@code PM_SCAN_CHECK_WPASYNC (1 << 1)}: fail (EPERM) on any part not in async WP mode. */
    private static final long PM_SCAN_CHECK_WPASYNC = 1L << 1;

    /**
     * {@code struct pm_scan_arg}: 96 bytes. {@code walk_end} is written by the kernel: where the walk
     * stopped, {@code end} when it went through.
     */
    private static final StructLayout PM_SCAN_ARG = MemoryLayout.structLayout(
            JAVA_LONG.withName("size"), JAVA_LONG.withName("flags"),
            JAVA_LONG.withName("start"), JAVA_LONG.withName("end"), JAVA_LONG.withName("walk_end"),
            JAVA_LONG.withName("vec"), JAVA_LONG.withName("vec_len"), JAVA_LONG.withName("max_pages"),
            JAVA_LONG.withName("category_inverted"), JAVA_LONG.withName("category_mask"),
            JAVA_LONG.withName("category_anyof_mask"), JAVA_LONG.withName("return_mask"));
    /** {@code struct page_region { __u64 start; __u64 end; __u64 categories; }}: [start, end). */
    private static final StructLayout PAGE_REGION = MemoryLayout.structLayout(
            JAVA_LONG.withName("start"), JAVA_LONG.withName("end"), JAVA_LONG.withName("categories"));
    /** {@code PAGEMAP_SCAN = _IOWR('f', 16, struct pm_scan_arg)} = 0xc0606610. */
    static final long PAGEMAP_SCAN = ioc(IOC_READ | IOC_WRITE, 'f', 16, PM_SCAN_ARG.byteSize());

    // ---- asm-generic/fcntl.h, linux/memfd.h, asm-generic/mman-common.h, asm-generic/errno*.h ----
    private static final int O_RDONLY = 0;
    private static final int O_RDWR = 02;
    private static final int O_NONBLOCK = 04000;
    private static final int O_CLOEXEC = 02000000;
    private static final int MFD_CLOEXEC = 0x1;
    private static final int PROT_READ = 0x1;
    private static final int PROT_WRITE = 0x2;
    private static final int MAP_SHARED = 0x01;
    private static final int EPERM = 1;
    private static final int ENOENT = 2;
    private static final int EAGAIN = 11;
    private static final int EBUSY = 16;
    private static final int EINVAL = 22;
    private static final int ENOTTY = 25;
    private static final int ENOSYS = 38;

    /** Output vector entries per PAGEMAP_SCAN call: 12 KiB, plenty for a typical collect. */
    private static final int VEC_ENTRIES = 512;
    /** UFFDIO_WRITEPROTECT returns EAGAIN while the mm is changing under it; that passes quickly. */
    private static final int MAX_EAGAIN_RETRIES = 1000;

    private static final long API_API = offset(UFFDIO_API_ARG, "api");
    private static final long API_FEATURES = offset(UFFDIO_API_ARG, "features");
    // uffdio_register and uffdio_writeprotect share the leading range and mode.
    private static final long ARG_START = UFFDIO_REGISTER_ARG.byteOffset(groupElement("range"), groupElement("start"));
    private static final long ARG_LEN = UFFDIO_REGISTER_ARG.byteOffset(groupElement("range"), groupElement("len"));
    private static final long ARG_MODE = offset(UFFDIO_REGISTER_ARG, "mode");
    private static final long REGISTER_IOCTLS = offset(UFFDIO_REGISTER_ARG, "ioctls");
    private static final long SCAN_SIZE = offset(PM_SCAN_ARG, "size");
    private static final long SCAN_FLAGS = offset(PM_SCAN_ARG, "flags");
    private static final long SCAN_START = offset(PM_SCAN_ARG, "start");
    private static final long SCAN_END = offset(PM_SCAN_ARG, "end");
    private static final long SCAN_WALK_END = offset(PM_SCAN_ARG, "walk_end");
    private static final long SCAN_VEC = offset(PM_SCAN_ARG, "vec");
    private static final long SCAN_VEC_LEN = offset(PM_SCAN_ARG, "vec_len");
    private static final long SCAN_MAX_PAGES = offset(PM_SCAN_ARG, "max_pages");
    private static final long SCAN_CATEGORY_INVERTED = offset(PM_SCAN_ARG, "category_inverted");
    private static final long SCAN_CATEGORY_MASK = offset(PM_SCAN_ARG, "category_mask");
    private static final long SCAN_CATEGORY_ANYOF_MASK = offset(PM_SCAN_ARG, "category_anyof_mask");
    private static final long SCAN_RETURN_MASK = offset(PM_SCAN_ARG, "return_mask");
    private static final long REGION_START = offset(PAGE_REGION, "start");
    private static final long REGION_END = offset(PAGE_REGION, "end");

    private final int uffd;
    private final int pagemap;
    private final long pageSize;
    // Shared, not confined: the owner may hand the object from thread to thread.
    private final Arena arena = Arena.ofShared();
    private final MemorySegment callState;
    private final MemorySegment ioctlArg;
    private final MemorySegment scanArg;
    private final MemorySegment regions;
    private boolean closed;

    private WriteProtect(int uffd, int pagemap) {
        this.uffd = uffd;
        this.pagemap = pagemap;
        this.pageSize = Libc.PAGE_SIZE;
        this.callState = arena.allocate(Libc.CALL_STATE);
        this.ioctlArg = arena.allocate(UFFDIO_REGISTER_ARG); // the largest of the uffdio_* arguments
        this.scanArg = arena.allocate(PM_SCAN_ARG);
        this.regions = arena.allocate(PAGE_REGION, VEC_ENTRIES);
    }

    /**
     * Tells whether this host can track writes this way, by trying it: opens a userfaultfd with the
     * features, maps a small scratch memfd, registers and protects it, writes one page, scans, checks
     * exactly that page comes back, then releases everything.
     *
     * @return null if this host can do it, else a one-line reason a user can act on
     */
    public static String unavailableReason() {
        try {
            String os = System.getProperty("os.name", "");
            if (!os.startsWith("Linux")) {
                return "userfaultfd write tracking needs Linux 6.7+, this is " + os;
            }
            if (syscallNumber() < 0) {
                return "userfaultfd write tracking supports x86-64 and aarch64 only, this is "
                        + System.getProperty("os.arch");
            }
            long pageSize = Libc.PAGE_SIZE;
            long length = 4 * pageSize;
            try (WriteProtect wp = open()) {
                MemorySegment scratch = mapSharedMemfd("ferry-uffd-probe", length);
                try {
                    long address = scratch.address();
                    wp.register(address, length);
                    wp.protect(address, length);
                    scratch.set(JAVA_BYTE, pageSize + 1, (byte) 1);
                    List<long[]> runs = new ArrayList<>();
                    wp.collectWritten(address, length, (offset, len) -> runs.add(new long[] {offset, len}));
                    if (runs.size() != 1 || runs.get(0)[0] != pageSize || runs.get(0)[1] != pageSize) {
                        return "PAGEMAP_SCAN on kernel " + kernelRelease()
                                + " did not report exactly the one page written to a write-protected memfd";
                    }
                    wp.unregister(address, length);
                } finally {
                    unmap(scratch);
                }
            }
            return null;
        } catch (UffdException e) {
            return e.getMessage();
        } catch (Throwable t) {
            // Never throw from here: linkage or access problems become the reason, too.
            return "userfaultfd write tracking probe failed: " + t;
        }
    }

    /**
     * Opens a userfaultfd in asynchronous write-protect mode, and {@code /proc/self/pagemap} for the
     * scans. Tries {@code /dev/userfaultfd} first, then the {@code userfaultfd(2)} system call.
     *
     * @return a tracker with nothing registered yet
     * @throws UffdException if the userfaultfd cannot be had, with what to do about it
     */
    public static WriteProtect open() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(Libc.CALL_STATE);
            int uffd = openUserfaultfd(state);
            int pagemap = -1;
            try {
                MemorySegment api = arena.allocate(UFFDIO_API_ARG);
                api.set(JAVA_LONG, API_API, UFFD_API);
                api.set(JAVA_LONG, API_FEATURES, FEATURES);
                if (Libc.ioctl(state, uffd, UFFDIO_API, api) < 0) {
                    int errno = Libc.errno(state);
                    if (errno == EINVAL) {
                        throw new UffdException("userfaultfd on kernel " + kernelRelease() + " lacks "
                                + missingFeatures() + ": write tracking needs Linux 6.7+", errno);
                    }
                    throw failure("ioctl(userfaultfd, UFFDIO_API)", errno, "");
                }
                pagemap = Libc.open(state, arena, "/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
                if (pagemap < 0) {
                    throw failure("open(/proc/self/pagemap)", Libc.errno(state), "");
                }
                return new WriteProtect(uffd, pagemap);
            } catch (RuntimeException | Error e) {
                Libc.close(state, uffd);
                if (pagemap >= 0) {
                    Libc.close(state, pagemap);
                }
                throw e;
            }
        }
    }

    /**
     * Registers {@code [address, address + length)} for write-protect tracking. The range must be
     * mapped, writable and anonymous, shmem (memfd) or hugetlbfs. Registering the exact same range
     * again is a no-op. Registration alone protects nothing: call {@link #protect} next.
     *
     * @param address page-aligned start
     * @param length page-aligned length, greater than zero
     * @throws UffdException if the kernel refuses the range
     */
    public synchronized void register(long address, long length) {
        ensureOpen();
        checkRange(address, length);
        ioctlArg.set(JAVA_LONG, ARG_START, address);
        ioctlArg.set(JAVA_LONG, ARG_LEN, length);
        ioctlArg.set(JAVA_LONG, ARG_MODE, UFFDIO_REGISTER_MODE_WP);
        ioctlArg.set(JAVA_LONG, REGISTER_IOCTLS, 0);
        if (Libc.ioctl(callState, uffd, UFFDIO_REGISTER, ioctlArg) < 0) {
            int errno = Libc.errno(callState);
            throw failure("ioctl(UFFDIO_REGISTER, " + range(address, length) + ")", errno, switch (errno) {
                case EINVAL -> "range not fully mapped, or a mapping userfaultfd-wp does not support";
                case EPERM -> "the mapping cannot be made writable";
                case EBUSY -> "registered with another userfaultfd already";
                default -> "";
            });
        }
        // The kernel answers which range ioctls the range supports; without WRITEPROTECT we would
        // register fine and then track nothing.
        long ioctls = ioctlArg.get(JAVA_LONG, REGISTER_IOCTLS);
        if ((ioctls & (1L << _UFFDIO_WRITEPROTECT)) == 0) {
            Libc.ioctl(callState, uffd, UFFDIO_UNREGISTER, ioctlArg);
            throw new UffdException("ioctl(UFFDIO_REGISTER, " + range(address, length)
                    + "): the kernel does not offer UFFDIO_WRITEPROTECT on this mapping", 0);
        }
    }

    /**
     * Unregisters a range registered before. Its pages stop being tracked and lose their protection.
     *
     * @param address page-aligned start
     * @param length page-aligned length, greater than zero
     * @throws UffdException if the kernel refuses, typically because the range is no longer mapped
     */
    public synchronized void unregister(long address, long length) {
        ensureOpen();
        checkRange(address, length);
        ioctlArg.set(JAVA_LONG, ARG_START, address);
        ioctlArg.set(JAVA_LONG, ARG_LEN, length);
        if (Libc.ioctl(callState, uffd, UFFDIO_UNREGISTER, ioctlArg) < 0) {
            int errno = Libc.errno(callState);
            throw failure("ioctl(UFFDIO_UNREGISTER, " + range(address, length) + ")", errno,
                    errno == EINVAL ? "range not (fully) mapped any more" : "");
        }
    }

    /**
     * Write-protects the whole range now, forgetting the writes so far: the next
     * {@link #collectWritten} reports only pages written after this call.
     *
     * @param address page-aligned start of a registered range
     * @param length page-aligned length, greater than zero
     * @throws UffdException if the range is not registered or not mapped
     */
    public synchronized void protect(long address, long length) {
        ensureOpen();
        checkRange(address, length);
        ioctlArg.set(JAVA_LONG, ARG_START, address);
        ioctlArg.set(JAVA_LONG, ARG_LEN, length);
        ioctlArg.set(JAVA_LONG, ARG_MODE, UFFDIO_WRITEPROTECT_MODE_WP);
        for (int attempt = 0; ; attempt++) {
            if (Libc.ioctl(callState, uffd, UFFDIO_WRITEPROTECT, ioctlArg) == 0) {
                return;
            }
            int errno = Libc.errno(callState);
            if (errno != EAGAIN || attempt == MAX_EAGAIN_RETRIES) {
                throw failure("ioctl(UFFDIO_WRITEPROTECT, " + range(address, length) + ")", errno,
                        errno == ENOENT ? "range not registered for write-protect, or not mapped" : "");
            }
            Thread.onSpinWait();
        }
    }

    /**
     * Collects the pages of {@code [address, address + length)} written since they were last
     * protected, and protects them again in the same page-table walk. That is atomic per page: a
     * write racing the collect is reported either now or by the next collect, never lost.
     *
     * <p>Runs come in ascending address order and do not overlap; a run may be split in two where
     * the output vector filled up. The sink is called while this object is locked; it must not
     * throw: the runs of the current batch are already protected again and would be lost.
     *
     * @param address page-aligned start of a registered range
     * @param length page-aligned length, greater than zero
     * @param sink called once per run of written pages, with its offset from {@code address} and its
     *     length in bytes
     * @return the number of pages reported
     * @throws UffdException if the scan fails, e.g. part of the range is not registered
     */
    public synchronized long collectWritten(long address, long length, WrittenRuns sink) {
        ensureOpen();
        checkRange(address, length);
        long end = address + length;
        long pages = 0;
        for (long start = address; start < end; ) {
            scanArg.set(JAVA_LONG, SCAN_SIZE, PM_SCAN_ARG.byteSize()); // lets the ABI grow
            scanArg.set(JAVA_LONG, SCAN_FLAGS, PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC);
            scanArg.set(JAVA_LONG, SCAN_START, start);
            scanArg.set(JAVA_LONG, SCAN_END, end);
            scanArg.set(JAVA_LONG, SCAN_WALK_END, 0);
            scanArg.set(JAVA_LONG, SCAN_VEC, regions.address());
            scanArg.set(JAVA_LONG, SCAN_VEC_LEN, VEC_ENTRIES);
            scanArg.set(JAVA_LONG, SCAN_MAX_PAGES, 0); // no limit
            scanArg.set(JAVA_LONG, SCAN_CATEGORY_INVERTED, 0);
            scanArg.set(JAVA_LONG, SCAN_CATEGORY_MASK, PAGE_IS_WRITTEN);
            scanArg.set(JAVA_LONG, SCAN_CATEGORY_ANYOF_MASK, 0);
            scanArg.set(JAVA_LONG, SCAN_RETURN_MASK, PAGE_IS_WRITTEN);
            int filled = Libc.ioctl(callState, pagemap, PAGEMAP_SCAN, scanArg);
            if (filled < 0) {
                int errno = Libc.errno(callState);
                throw failure("ioctl(/proc/self/pagemap, PAGEMAP_SCAN, " + range(start, end - start) + ")",
                        errno, switch (errno) {
                            case ENOTTY -> "kernel " + kernelRelease() + " has no PAGEMAP_SCAN: needs Linux 6.7+";
                            case EPERM -> "part of the range is not registered for write-protect tracking";
                            default -> "";
                        });
            }
            for (int i = 0; i < filled; i++) {
                long region = i * PAGE_REGION.byteSize();
                long regionStart = regions.get(JAVA_LONG, region + REGION_START);
                long regionEnd = regions.get(JAVA_LONG, region + REGION_END);
                pages += (regionEnd - regionStart) / pageSize;
                sink.written(regionStart - address, regionEnd - regionStart);
            }
            long walkEnd = scanArg.get(JAVA_LONG, SCAN_WALK_END);
            if (walkEnd <= start) {
                // Cannot happen per the ABI; looping on it would spin forever.
                throw new UffdException("PAGEMAP_SCAN made no progress at 0x" + Long.toHexString(start), 0);
            }
            start = walkEnd;
        }
        return pages;
    }

    /** Receives runs of written pages from {@link #collectWritten}. */
    @FunctionalInterface
    public interface WrittenRuns {
        /**
         * One run of pages written since the previous collect.
         *
         * @param offset byte offset of the run from the {@code address} given to collectWritten,
         *     page-aligned
         * @param length length of the run in bytes, a multiple of the page size
         */
        void written(long offset, long length);
    }

    /**
     * Closes the userfaultfd, which unregisters every range it tracked, and the pagemap descriptor.
     * Calling it again does nothing.
     */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        // Nothing useful can be done about a failing close(2) here; the descriptors are gone anyway.
        Libc.close(callState, pagemap);
        Libc.close(callState, uffd);
        arena.close();
    }

    // ---- package-private helpers, also used by the test ----

    /** The page size of this process, which every range must be aligned to. */
    static long pageSize() {
        return Libc.PAGE_SIZE;
    }

    /**
     * Maps a fresh memfd of {@code size} bytes MAP_SHARED, read-write, like guest RAM. No page is
     * populated. The descriptor is closed before returning; the mapping keeps the file alive.
     */
    @SuppressWarnings("restricted") // reinterpret: the mapping is exactly size bytes
    static MemorySegment mapSharedMemfd(String name, long size) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(Libc.CALL_STATE);
            int fd = Libc.memfdCreate(state, arena, name, MFD_CLOEXEC);
            if (fd < 0) {
                throw failure("memfd_create(" + name + ")", Libc.errno(state), "");
            }
            try {
                if (Libc.ftruncate(state, fd, size) < 0) {
                    throw failure("ftruncate(memfd, " + size + ")", Libc.errno(state), "");
                }
                MemorySegment map = Libc.mmap(state, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
                if (map.address() == -1L) {
                    throw failure("mmap(memfd, " + size + ")", Libc.errno(state), "");
                }
                return map.reinterpret(size);
            } finally {
                Libc.close(state, fd);
            }
        }
    }

    /** Unmaps a mapping made by {@link #mapSharedMemfd}. */
    static void unmap(MemorySegment mapping) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(Libc.CALL_STATE);
            if (Libc.munmap(state, mapping, mapping.byteSize()) < 0) {
                throw failure("munmap(" + range(mapping.address(), mapping.byteSize()) + ")",
                        Libc.errno(state), "");
            }
        }
    }

    // ---- internals ----

    private static int openUserfaultfd(MemorySegment state) {
        // O_NONBLOCK: in async mode no messages are queued, but a stray read must never hang.
        int flags = O_CLOEXEC | O_NONBLOCK;
        int devErrno;
        try (Arena arena = Arena.ofConfined()) {
            // /dev/userfaultfd (6.1+) is governed by its file mode, not by the sysctl.
            int dev = Libc.open(state, arena, "/dev/userfaultfd", O_RDWR | O_CLOEXEC);
            if (dev >= 0) {
                try {
                    int fd = Libc.ioctl(state, dev, USERFAULTFD_IOC_NEW, flags);
                    if (fd >= 0) {
                        return fd;
                    }
                    throw failure("ioctl(/dev/userfaultfd, USERFAULTFD_IOC_NEW)", Libc.errno(state), "");
                } finally {
                    Libc.close(state, dev);
                }
            }
            devErrno = Libc.errno(state);
        }
        long fd = Libc.syscall(state, syscallNumber(), flags);
        if (fd >= 0) {
            return (int) fd;
        }
        int errno = Libc.errno(state);
        if (errno == EPERM) {
            throw new UffdException("userfaultfd() failed: " + describe(errno) + " (and /dev/userfaultfd: "
                    + describe(devErrno) + "): run as root or with CAP_SYS_PTRACE, or set sysctl"
                    + " vm.unprivileged_userfaultfd=1, or give this user read-write access to /dev/userfaultfd",
                    errno);
        }
        if (errno == ENOSYS) {
            throw new UffdException("userfaultfd() failed: " + describe(errno) + ": kernel " + kernelRelease()
                    + " is built without CONFIG_USERFAULTFD", errno);
        }
        throw failure("userfaultfd()", errno, "");
    }

    /** Names the features we need that this kernel does not offer, by asking a throwaway userfaultfd. */
    private static String missingFeatures() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(Libc.CALL_STATE);
            int fd = openUserfaultfd(state);
            try {
                MemorySegment api = arena.allocate(UFFDIO_API_ARG);
                api.set(JAVA_LONG, API_API, UFFD_API);
                api.set(JAVA_LONG, API_FEATURES, 0); // features 0: the kernel answers with all it has
                if (Libc.ioctl(state, fd, UFFDIO_API, api) < 0) {
                    return "the write-protect features";
                }
                long missing = FEATURES & ~api.get(JAVA_LONG, API_FEATURES);
                List<String> names = new ArrayList<>();
                if ((missing & UFFD_FEATURE_WP_ASYNC) != 0) names.add("UFFD_FEATURE_WP_ASYNC");
                if ((missing & UFFD_FEATURE_WP_UNPOPULATED) != 0) names.add("UFFD_FEATURE_WP_UNPOPULATED");
                if ((missing & UFFD_FEATURE_WP_HUGETLBFS_SHMEM) != 0) names.add("UFFD_FEATURE_WP_HUGETLBFS_SHMEM");
                return names.isEmpty() ? "the write-protect features" : String.join(", ", names);
            } finally {
                Libc.close(state, fd);
            }
        } catch (RuntimeException e) {
            return "the write-protect features";
        }
    }

    /** The userfaultfd(2) number, or -1 on an architecture we do not know. */
    private static long syscallNumber() {
        return switch (System.getProperty("os.arch", "")) {
            case "amd64", "x86_64" -> 323; // arch/x86/entry/syscalls/syscall_64.tbl
            case "aarch64" -> 282;         // include/uapi/asm-generic/unistd.h
            default -> -1;
        };
    }

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException("WriteProtect is closed");
        }
    }

    private void checkRange(long address, long length) {
        if (length <= 0 || address % pageSize != 0 || length % pageSize != 0 || address + length < address) {
            throw new IllegalArgumentException("range " + range(address, length)
                    + " is not page-aligned, empty or wraps (page size " + pageSize + ")");
        }
    }

    private static long ioc(int dir, int type, int nr, long size) {
        return ((long) dir << 30) | (size << 16) | ((long) type << 8) | nr;
    }

    private static long offset(StructLayout layout, String field) {
        return layout.byteOffset(groupElement(field));
    }

    private static String range(long address, long length) {
        return String.format(Locale.ROOT, "[0x%x, +0x%x)", address, length);
    }

    private static UffdException failure(String call, int errno, String hint) {
        return new UffdException(call + " failed: " + describe(errno) + (hint.isEmpty() ? "" : ": " + hint), errno);
    }

    /** "EINVAL (Invalid argument)": the symbolic name for the usual suspects, libc's text for all. */
    static String describe(int errno) {
        String name = switch (errno) {
            case 1 -> "EPERM";
            case 2 -> "ENOENT";
            case 4 -> "EINTR";
            case 9 -> "EBADF";
            case 11 -> "EAGAIN";
            case 12 -> "ENOMEM";
            case 13 -> "EACCES";
            case 14 -> "EFAULT";
            case 16 -> "EBUSY";
            case 19 -> "ENODEV";
            case 22 -> "EINVAL";
            case 25 -> "ENOTTY";
            case 38 -> "ENOSYS";
            case 95 -> "EOPNOTSUPP";
            default -> "errno " + errno;
        };
        return name + " (" + Libc.strerror(errno) + ")";
    }

    private static String kernelRelease() {
        try {
            return Files.readString(Path.of("/proc/sys/kernel/osrelease")).strip();
        } catch (IOException | RuntimeException e) {
            return System.getProperty("os.version", "?");
        }
    }

    /**
     * The libc downcalls. A holder class, so that a host where linking fails makes
     * {@link #unavailableReason} say so rather than failing class initialization of the outer class.
     * Every call that can fail captures errno into a caller-provided state segment, because the JVM
     * may clobber errno between the call and any later read of it.
     */
    @SuppressWarnings("restricted") // that is what this class is for
    private static final class Libc {
        private static final Linker LINKER = Linker.nativeLinker();
        private static final Linker.Option ERRNO = Linker.Option.captureCallState("errno");
        static final StructLayout CALL_STATE = Linker.Option.captureStateLayout();
        private static final long ERRNO_OFFSET = CALL_STATE.byteOffset(groupElement("errno"));

        // open, ioctl and syscall are variadic in C: say so, or the ABI may pass arguments wrongly.
        private static final MethodHandle OPEN = downcall("open",
                FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT), ERRNO, Linker.Option.firstVariadicArg(2));
        private static final MethodHandle CLOSE = downcall("close",
                FunctionDescriptor.of(JAVA_INT, JAVA_INT), ERRNO);
        private static final MethodHandle IOCTL_PTR = downcall("ioctl",
                FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG, ADDRESS), ERRNO, Linker.Option.firstVariadicArg(2));
        private static final MethodHandle IOCTL_INT = downcall("ioctl",
                FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_INT), ERRNO, Linker.Option.firstVariadicArg(2));
        // The variadic argument is passed as a long: glibc's syscall() reads every argument as one.
        private static final MethodHandle SYSCALL = downcall("syscall",
                FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG), ERRNO, Linker.Option.firstVariadicArg(1));
        private static final MethodHandle MEMFD_CREATE = downcall("memfd_create",
                FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT), ERRNO);
        private static final MethodHandle FTRUNCATE = downcall("ftruncate",
                FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG), ERRNO);
        private static final MethodHandle MMAP = downcall("mmap",
                FunctionDescriptor.of(ADDRESS, ADDRESS, JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_LONG), ERRNO);
        private static final MethodHandle MUNMAP = downcall("munmap",
                FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG), ERRNO);
        private static final MethodHandle STRERROR = downcall("strerror",
                FunctionDescriptor.of(ADDRESS, JAVA_INT));
        private static final MethodHandle GETPAGESIZE = downcall("getpagesize",
                FunctionDescriptor.of(JAVA_INT));

        static final long PAGE_SIZE = getpagesize();

        private static MethodHandle downcall(String name, FunctionDescriptor descriptor, Linker.Option... options) {
            MemorySegment symbol = LINKER.defaultLookup().find(name)
                    .orElseThrow(() -> new UnsatisfiedLinkError("libc has no " + name));
            return LINKER.downcallHandle(symbol, descriptor, options);
        }

        static int errno(MemorySegment state) {
            return state.get(JAVA_INT, ERRNO_OFFSET);
        }

        static int open(MemorySegment state, Arena arena, String path, int flags) {
            try {
                return (int) OPEN.invokeExact(state, arena.allocateFrom(path), flags, 0);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        static int close(MemorySegment state, int fd) {
            try {
                return (int) CLOSE.invokeExact(state, fd);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        static int ioctl(MemorySegment state, int fd, long request, MemorySegment arg) {
            try {
                return (int) IOCTL_PTR.invokeExact(state, fd, request, arg);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        static int ioctl(MemorySegment state, int fd, long request, int arg) {
            try {
                return (int) IOCTL_INT.invokeExact(state, fd, request, arg);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        static long syscall(MemorySegment state, long number, long arg) {
            try {
                return (long) SYSCALL.invokeExact(state, number, arg);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        static int memfdCreate(MemorySegment state, Arena arena, String name, int flags) {
            try {
                return (int) MEMFD_CREATE.invokeExact(state, arena.allocateFrom(name), flags);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        static int ftruncate(MemorySegment state, int fd, long length) {
            try {
                return (int) FTRUNCATE.invokeExact(state, fd, length);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        static MemorySegment mmap(MemorySegment state, long length, int prot, int flags, int fd) {
            try {
                return (MemorySegment) MMAP.invokeExact(state, MemorySegment.NULL, length, prot, flags, fd, 0L);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        static int munmap(MemorySegment state, MemorySegment address, long length) {
            try {
                return (int) MUNMAP.invokeExact(state, address, length);
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        static String strerror(int errno) {
            try {
                MemorySegment text = (MemorySegment) STRERROR.invokeExact(errno);
                return text.equals(MemorySegment.NULL) ? "?" : text.reinterpret(Long.MAX_VALUE).getString(0);
            } catch (Throwable t) {
                return "?";
            }
        }

        private static long getpagesize() {
            try {
                return (int) GETPAGESIZE.invokeExact();
            } catch (Throwable t) {
                throw rethrow(t);
            }
        }

        private static RuntimeException rethrow(Throwable t) {
            if (t instanceof RuntimeException e) {
                throw e;
            }
            if (t instanceof Error e) {
                throw e;
            }
            // Downcalls throw no checked exceptions; keep the compiler satisfied.
            throw new IllegalStateException(t);
        }
    }
}
