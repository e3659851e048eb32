package dev.ferry.machine;

import com.google.common.util.concurrent.Uninterruptibles;
import dev.ferry.memory.MemfdRamBlock;

import java.lang.management.ManagementFactory;
import java.util.concurrent.TimeUnit;

/**
 * Where a machine's RAM comes from, made before the machine (QEMU's {@code memory-backend-memfd}
 * object with {@code prealloc=on}): a memfd of the guest's size and, if asked for, a thread that
 * faults it in from the top down in chunks of {@value #PREALLOCATION_CHUNK} bytes. A
 * destination that knows its guest's size makes one while it waits for the source, so first
 * touches (0.5–1 s per GiB on a nested host) are paid before the migration, not during it.
 *
 * <p>Faulting in never changes contents: pages written meanwhile, by the guest or an incoming
 * migration that meets the thread half way, keep what was written, and each page is faulted in
 * once, by one of the two. A machine built on a backend owns it ({@link Machine#create(MachineConfig,
 * AcceleratorProvider, MemoryBackend)}) and closes it; an unused one is closed by its maker.
 */
public final class MemoryBackend implements AutoCloseable {

    /** Bytes faulted in at a time: a few milliseconds' work, so that close() stops it quickly. */
    static final long PREALLOCATION_CHUNK = 16L << 20;

    private final MemfdRamBlock block;
    private volatile Thread preallocation;
    private volatile boolean stopPreallocation;
    private volatile long preallocationCpuNanos;
    private boolean owned;
    private boolean closed;

    private MemoryBackend(MemfdRamBlock block) {
        this.block = block;
    }

    /**
     * Allocates guest RAM of {@code size} bytes, untouched.
     *
     * @throws IllegalArgumentException if the host cannot hold it ({@link HostMemory}), refused
     *                                  before any is allocated, or the size is not page-aligned
     */
    public static MemoryBackend memfd(long size) {
        HostMemory.require(size);
        return new MemoryBackend(MemfdRamBlock.allocate(Machine.RAM_NAME, size));
    }

    /** @return the guest RAM's size in bytes */
    public long size() {
        return block.size();
    }

    /**
     * Starts faulting the RAM in on a thread of its own ("prealloc"), unless it was started
     * already. A host that cannot provide the memory fails it quietly: pages are then faulted
     * in as they are written, as without preallocation.
     *
     * @return this backend
     */
    public synchronized MemoryBackend preallocateInBackground() {
        if (closed || preallocation != null) {
            return this;
        }
        preallocation = Thread.ofPlatform().name("prealloc").daemon(true).start(() -> {
            try {
                for (long end = block.size(); end > 0 && !stopPreallocation; end -= PREALLOCATION_CHUNK) {
                    long start = Math.max(0, end - PREALLOCATION_CHUNK);
                    block.preallocate(start, end - start);
                }
            } catch (RuntimeException hostOutOfMemory) {
                // Left to demand faults; memfd() already checked that the host holds the guest.
            } finally {
                preallocationCpuNanos = ManagementFactory.getThreadMXBean().getCurrentThreadCpuTime();
            }
        });
        return this;
    }

    /** @return whether RAM is still being faulted in */
    public boolean preallocating() {
        Thread t = preallocation;
        return t != null && t.isAlive();
    }

    /**
     * Waits until the RAM is faulted in, at most {@code timeoutMs}.
     *
     * @return whether it is (or preallocation never started)
     */
    public boolean awaitPreallocation(long timeoutMs) {
        Thread t = preallocation;
        if (t != null) {
            Uninterruptibles.joinUninterruptibly(t, timeoutMs, TimeUnit.MILLISECONDS);
        }
        return t == null || !t.isAlive();
    }

    /** @return CPU time the preallocation thread spent, once it has finished; 0 before */
    public long preallocationCpuNanos() {
        return preallocationCpuNanos;
    }

    /** Hands the RAM block to the machine being built on it; a backend serves one machine. */
    synchronized MemfdRamBlock take() {
        if (closed || owned) {
            throw new IllegalStateException("memory backend of " + size() + " bytes is "
                    + (closed ? "closed" : "in use by another machine"));
        }
        owned = true;
        return block;
    }

    /**
     * Stops preallocation and, unless a machine took the RAM (and closes it), frees it. The
     * thread is gone when this returns: it must be before the RAM is unmapped.
     */
    @Override
    public void close() {
        Thread t;
        synchronized (this) {
            stopPreallocation = true;
            t = preallocation;
        }
        if (t != null) {
            Uninterruptibles.joinUninterruptibly(t);
        }
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
            if (!owned) {
                block.close();
            }
        }
    }
}
