package dev.ferry.memory;

import dev.ferry.api.DirtyClient;
import dev.ferry.api.RamBlock;
import dev.ferry.memory.linux.Linux;

import java.lang.foreign.MemorySegment;
import java.util.EnumMap;
import java.util.Map;
import java.util.Objects;

/**
 * A RAM block backed by a memfd mapped shared (QEMU's {@code RAMBlock} with a memory-backend-memfd):
 * KVM can use it as a memslot and another process could map the same file. Each
 * {@link DirtyClient} has its own bitmap; marks land only in the bitmaps of clients that are
 * logging the block, as in QEMU's {@code cpu_physical_memory_set_dirty_range}.
 */
public final class MemfdRamBlock implements RamBlock, AutoCloseable {

    private final String name;
    private final long size;
    private final int fd;
    private final MemorySegment host;
    private final Map<DirtyClient, DirtyBitmap> bitmaps = new EnumMap<>(DirtyClient.class);
    private volatile int dirtyLogMask;
    private volatile boolean closed;

    private MemfdRamBlock(String name, long size, int fd, MemorySegment host) {
        this.name = name;
        this.size = size;
        this.fd = fd;
        this.host = host;
        for (DirtyClient client : DirtyClient.values()) {
            bitmaps.put(client, new DirtyBitmap(size / pageSize()));
        }
    }

    /**
     * Allocates a block of {@code size} bytes of zeroed shared memory. Pages are not touched, so
     * the host commits memory only as the guest writes it.
     *
     * @throws IllegalArgumentException if {@code size} is not a positive multiple of 4 KiB
     * @throws dev.ferry.memory.linux.LinuxException if the host refuses the memory
     */
    public static MemfdRamBlock allocate(String name, long size) {
        Objects.requireNonNull(name, "name");
        if (size <= 0 || size % 4096 != 0) {
            throw new IllegalArgumentException("RAM block " + name + ": size " + size
                    + " is not a positive multiple of 4096");
        }
        int fd = Linux.memfdCreate("ferry:" + name, Linux.MFD_CLOEXEC);
        try {
            Linux.ftruncate(fd, size);
            MemorySegment host = Linux.mmap(size, Linux.PROT_READ | Linux.PROT_WRITE,
                    Linux.MAP_SHARED | Linux.MAP_NORESERVE, fd, 0);
            return new MemfdRamBlock(name, size, fd, host);
        } catch (RuntimeException e) {
            Linux.close(fd);
            throw e;
        }
    }

    /**
     * Faults every page of the block in now, as QEMU's {@code -mem-prealloc} does, so the guest
     * does not pay for first touches later. On a nested host a first touch costs tens of
     * microseconds, which would cap how fast a fresh guest can dirty memory.
     *
     * @throws dev.ferry.memory.linux.LinuxException if the host cannot provide the memory
     */
    public void preallocate() {
        preallocate(0, size);
    }

    /**
     * Faults the pages of {@code [offset, offset + length)} in; pages already there (written by
     * the guest or by an incoming migration meanwhile) keep their contents.
     *
     * @param offset page-aligned
     * @param length a multiple of the page size
     * @throws dev.ferry.memory.linux.LinuxException if the host cannot provide the memory
     */
    public void preallocate(long offset, long length) {
        MemorySegment mem = host().asSlice(offset, length);
        Linux.madvise(mem, Linux.MADV_POPULATE_WRITE);
        // On a nested host the first access to each populated page still costs a fault in the
        // outer hypervisor (measured: 0.4-0.7 s per GiB); take it now rather than mid-migration.
        byte sink = 0;
        for (long off = 0; off < length; off += pageSize()) {
            sink ^= mem.get(java.lang.foreign.ValueLayout.JAVA_BYTE, off);
        }
        touched = sink;
    }

    // Keeps the touch loop from being optimized away.
    @SuppressWarnings("unused")
    private volatile byte touched;

    @Override
    public String name() {
        return name;
    }

    @Override
    public long size() {
        return size;
    }

    @Override
    public MemorySegment host() {
        if (closed) {
            throw new IllegalStateException("RAM block " + name + " is closed");
        }
        return host;
    }

    @Override
    public java.util.OptionalInt fd() {
        return java.util.OptionalInt.of(fd);
    }

    /** @return the bitmap of one client */
    public DirtyBitmap bitmap(DirtyClient client) {
        return bitmaps.get(client);
    }

    /** @return the clients logging this block, as a {@link DirtyClient} mask */
    public int dirtyLogMask() {
        return dirtyLogMask;
    }

    /**
     * Starts or stops logging for clients. A client that starts logging begins with a clear
     * bitmap; whoever starts it decides what it considers dirty at that point.
     */
    synchronized void setDirtyLogMask(int mask) {
        int started = mask & ~dirtyLogMask;
        for (DirtyClient client : DirtyClient.values()) {
            if (client.in(started)) {
                bitmaps.get(client).clearAll();
            }
        }
        dirtyLogMask = mask;
    }

    @Override
    public void setDirty(long offset, long length) {
        if (offset < 0 || length < 0 || offset + length > size) {
            throw new IndexOutOfBoundsException("[" + offset + ", +" + length + ") outside RAM block "
                    + name + " of " + size + " bytes");
        }
        if (length == 0) {
            return;
        }
        int mask = dirtyLogMask;
        if (mask == 0) {
            return;
        }
        long first = offset / pageSize();
        long last = (offset + length - 1) / pageSize();
        for (DirtyClient client : DirtyClient.values()) {
            if (client.in(mask)) {
                bitmaps.get(client).setRange(first, last - first + 1);
            }
        }
    }

    /** Marks one page dirty for every logging client; the cheap path for single-page writes. */
    public void setDirtyPage(long page) {
        int mask = dirtyLogMask;
        if (mask == DirtyClient.MIGRATION.bit()) {
            bitmaps.get(DirtyClient.MIGRATION).set(page);
        } else if (mask != 0) {
            for (DirtyClient client : DirtyClient.values()) {
                if (client.in(mask)) {
                    bitmaps.get(client).set(page);
                }
            }
        }
    }

    @Override
    public void setDirtyWord(long firstPage, long bits) {
        int mask = dirtyLogMask;
        for (DirtyClient client : DirtyClient.values()) {
            if (client.in(mask)) {
                bitmaps.get(client).orBits(firstPage, bits);
            }
        }
    }

    @Override
    public long setDirtyBitmap(long firstPage, MemorySegment bitmap, long pages) {
        int mask = dirtyLogMask;
        long added = 0;
        for (DirtyClient client : DirtyClient.values()) {
            if (client.in(mask)) {
                long n = bitmaps.get(client).orLittleEndian(firstPage, bitmap, pages);
                if (client == DirtyClient.MIGRATION) {
                    added = n;
                }
            }
        }
        return added;
    }

    /**
     * Moves the migration client's dirty bits into {@code migrationBitmap} and clears them here
     * (QEMU's {@code ramblock_sync_dirty_bitmap}).
     *
     * @return the number of pages newly dirty in {@code migrationBitmap}
     */
    public long syncDirtyBitmap(DirtyBitmap migrationBitmap) {
        return bitmaps.get(DirtyClient.MIGRATION).drainInto(migrationBitmap);
    }

    @Override
    public synchronized void close() {
        if (!closed) {
            closed = true;
            Linux.munmap(host);
            Linux.close(fd);
        }
    }

    @Override
    public String toString() {
        return "RAMBlock " + name + " (" + size + " bytes)";
    }
}
