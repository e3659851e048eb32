package dev.ferry.vhost;

import dev.ferry.api.DirtyClient;
import dev.ferry.api.MemoryListener;
import dev.ferry.api.MemorySection;
import dev.ferry.api.RamBlock;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * One vhost dev (QEMU's {@code struct vhost_dev}): a set of virtqueues served by one backend,
 * with a memory listener of its own at device-backend priority.
 *
 * <h2>Memory table</h2>
 * Region add and nop collect the RAM sections (not ROM) between begin and commit; commit makes
 * them the table the backend translates guest addresses with (vhost_region_add_section,
 * vhost_commit). If the log no longer covers the table, commit resizes it.
 *
 * <h2>Logging</h2>
 * Global log start takes a reference on the backend type's shared log and queues the dev for
 * election; global log stop leaves the queue and drops the reference. On every log sync the dev
 * takes the log's marks for its used rings within the section; the memory sections themselves
 * are scanned only by the elected logger, or by every dev under {@link LogScan#EVERY_DEV}, the
 * behaviour before seed 000 kept for comparison. A log stop for a section scans it whatever the
 * election says, so a dev that leaves (its device unplugged while logging) leaves nothing behind.
 * Marks taken go into the section's RAM block with {@link RamBlock#setDirtyBitmap}.
 *
 * <h2>DMA</h2>
 * {@link #dmaWrite} writes guest memory through the table's host mapping, behind the
 * accelerator's back, then marks the log with atomic ORs: data first, mark second, so a sync
 * that takes the mark sees the data. It holds the log lock for reading; a resize swaps the log
 * under the write lock, so no mark lands in a log after it was synced and freed.
 *
 * <p>Listener callbacks run under the memory system's lock, one at a time; DMA runs on the
 * backend's worker threads.
 */
public final class VhostDev implements MemoryListener {

    /** Who scans the memory sections of the shared log on a sync. */
    public enum LogScan {
        /** One elected dev per backend type (seed 000, QEMU 9.1). */
        ELECTED,
        /** Every dev, as QEMU did before: the cost grows with the number of devs. */
        EVERY_DEV;

        /** @return the mode named {@code elected} or {@code every-dev} */
        public static LogScan parse(String s) {
            return switch (s) {
                case "elected" -> ELECTED;
                case "every-dev" -> EVERY_DEV;
                default -> throw new IllegalArgumentException("log-scan must be elected or every-dev, got '" + s + "'");
            };
        }
    }

    private final String name;
    private final VhostBackendType type;
    private final VhostBackends backends;
    private final LogScan logScan;
    private final boolean logging;
    private final List<VirtQueue> queues;

    private List<MemorySection> pending;
    private volatile List<MemorySection> table = List.of();
    private final ReentrantReadWriteLock logLock = new ReentrantReadWriteLock();
    /** The shared log while the dev logs; written under the write lock by listener callbacks. */
    private VhostLog log;
    /** Global logging is on: the dev takes a log as soon as its table says how large. */
    private boolean wantLog;
    private final Arena arena = Arena.ofShared();
    /** One word of marks on its way to a RAM block; used under the memory system's lock only. */
    private final MemorySegment word = arena.allocate(8, 8);

    private final AtomicLong dmaBytes = new AtomicLong();
    private final AtomicLong usedWrites = new AtomicLong();
    private long syncs;
    private long sectionScans;
    private long marksTaken;
    private long scanNanos;
    private long resizes;

    /**
     * @param name     for messages, e.g. {@code vhost-net0.qp3}
     * @param type     its backend's type, which decides the log it shares
     * @param backends the machine's logs and loggers
     * @param logScan  who scans memory sections
     * @param logging  whether the dev logs at all; off only to show what is lost without the log
     * @param queues   its virtqueues
     */
    public VhostDev(String name, VhostBackendType type, VhostBackends backends, LogScan logScan, boolean logging,
                    List<VirtQueue> queues) {
        this.name = name;
        this.type = type;
        this.backends = backends;
        this.logScan = logScan;
        this.logging = logging;
        this.queues = List.copyOf(queues);
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public int priority() {
        return DEV_BACKEND_PRIORITY;
    }

    /** @return its virtqueues */
    public List<VirtQueue> queues() {
        return queues;
    }

    /** @return its backend type */
    public VhostBackendType backendType() {
        return type;
    }

    // ---- memory table

    /** A section the backend may access: RAM that is not ROM (QEMU's vhost_section). */
    private static boolean vhostSection(MemorySection s) {
        return s.isRam() && !s.readOnly();
    }

    @Override
    public void begin() {
        pending = new ArrayList<>();
    }

    @Override
    public void regionAdd(MemorySection section) {
        if (vhostSection(section)) {
            pending.add(section);
        }
    }

    @Override
    public void regionNop(MemorySection section) {
        regionAdd(section);
    }

    @Override
    public void commit() {
        List<MemorySection> next = List.copyOf(pending);
        pending = null;
        table = next;
        long words = VhostLog.wordsFor(tableEnd(next));
        if (wantLog && log == null && !next.isEmpty()) {
            acquireLog();
        } else if (log != null && words > log.words()) {
            resize(words);
        }
    }

    private static long tableEnd(List<MemorySection> sections) {
        long end = 0;
        for (MemorySection s : sections) {
            end = Math.max(end, s.end());
        }
        return end;
    }

    // ---- logging

    @Override
    public void logGlobalStart() {
        if (!logging) {
            return;
        }
        wantLog = true;
        // A dev registered while logging is on hears this before its table is replayed: its
        // log is sized, and taken, at the commit that ends the replay.
        if (log == null && !table.isEmpty()) {
            acquireLog();
        }
    }

    private void acquireLog() {
        swapLog(backends.get(type, VhostLog.wordsFor(tableEnd(table))));
        backends.elect(type, this);
    }

    @Override
    public void logGlobalStop() {
        wantLog = false;
        if (log == null) {
            return;
        }
        backends.unelect(type, this);
        VhostLog old = swapLog(null);
        backends.put(type, old, () -> syncAll(old));
    }

    /** Moves to a log of {@code words} (vhost_dev_log_resize): the new one first, then the old one is let go. */
    private void resize(long words) {
        VhostLog bigger = backends.get(type, words);
        VhostLog old = swapLog(bigger);
        backends.put(type, old, () -> syncAll(old));
        resizes++;
    }

    private VhostLog swapLog(VhostLog next) {
        logLock.writeLock().lock();
        try {
            VhostLog old = log;
            log = next;
            return old;
        } finally {
            logLock.writeLock().unlock();
        }
    }

    /** @return whether this dev scans memory sections on a sync */
    public boolean scansSections() {
        return log != null && (logScan == LogScan.EVERY_DEV || backends.isLogger(type, this));
    }

    @Override
    public void logSync(MemorySection section) {
        VhostLog l = log;
        if (l == null || !section.isRam()) {
            return;
        }
        syncs++;
        if (scansSections()) {
            long t0 = System.nanoTime();
            scanSection(l, section);
            scanNanos += System.nanoTime() - t0;
            sectionScans++;
        }
        // Every dev, every sync: kept to a plain read of the log word under each used ring when
        // it is clean (not timed either: two clock reads would cost more than that).
        for (int i = 0; i < queues.size(); i++) {
            VirtQueue q = queues.get(i);
            if (l.anyMarked(q.usedAddress(), q.usedSize())) {
                syncRange(l, section, q.usedAddress(), q.usedAddress() + q.usedSize());
            }
        }
    }

    @Override
    public void logStop(MemorySection section, int oldMask, int newMask) {
        VhostLog l = log;
        if (l != null && DirtyClient.MIGRATION.in(oldMask) && !DirtyClient.MIGRATION.in(newMask)) {
            // The section stops logging, or this dev is being unregistered: leave no mark behind.
            scanSection(l, section);
        }
    }

    private void scanSection(VhostLog l, MemorySection section) {
        for (MemorySection r : table) {
            syncRange(l, section, r.address(), r.end());
        }
    }

    /** Takes every mark of {@code l} within the table into RAM (the last reference's sync in vhost_log_put). */
    private void syncAll(VhostLog l) {
        for (MemorySection s : table) {
            syncRange(l, s, s.address(), s.end());
        }
    }

    /**
     * Takes the marks of {@code [start, end)} ∩ the section from the log and marks those pages
     * dirty in the section's RAM block (QEMU's vhost_dev_sync_region), a 64-page word at a time.
     */
    private void syncRange(VhostLog l, MemorySection section, long start, long end) {
        start = Math.max(start, section.address());
        end = Math.min(Math.min(end, section.end()), l.coverage());
        if (start >= end || section.ramBlock().isEmpty()) {
            return;
        }
        RamBlock block = section.ramBlock().get();
        long firstPage = start / VhostLog.LOG_PAGE;
        long pages = (end - 1) / VhostLog.LOG_PAGE - firstPage + 1;
        long blockPage = (section.offsetInBlock() + firstPage * VhostLog.LOG_PAGE - section.address())
                / block.pageSize();
        marksTaken += l.take(firstPage, pages, (k, bits) -> {
            word.set(ValueLayout.JAVA_LONG_UNALIGNED, 0, bits);
            block.setDirtyBitmap(blockPage + 64 * k, word, Math.min(64, pages - 64 * k));
        });
    }

    // ---- DMA, from the backend's worker

    /**
     * Writes {@code data} into guest memory at {@code address} as the backend's DMA does, then
     * marks the pages in the log if the dev logs.
     *
     * @throws IllegalStateException if the range is not inside one section of the memory table
     */
    void dmaWrite(long address, MemorySegment data) {
        logLock.readLock().lock();
        try {
            host(address, data.byteSize()).copyFrom(data);
            dmaBytes.addAndGet(data.byteSize());
            if (log != null) {
                log.mark(address, data.byteSize());
            }
        } finally {
            logLock.readLock().unlock();
        }
    }

    /**
     * Adds an element to a queue's used ring and publishes it by bumping {@code used->idx}, then
     * logs what it wrote (the kernel's vhost_add_used and log_used).
     *
     * @param usedIdx the queue's used index before this element
     */
    void completeUsed(VirtQueue q, int usedIdx, int id, int len) {
        logLock.readLock().lock();
        try {
            long elem = q.usedAddress() + 4 + 8L * (usedIdx & (q.size() - 1));
            MemorySegment e = host(elem, 8);
            e.set(ValueLayout.JAVA_INT_UNALIGNED, 0, id);
            e.set(ValueLayout.JAVA_INT_UNALIGNED, 4, len);
            MemorySegment idx = host(q.usedAddress() + 2, 2);
            idx.set(ValueLayout.JAVA_SHORT_UNALIGNED, 0, (short) (usedIdx + 1));
            usedWrites.incrementAndGet();
            if (log != null) {
                log.mark(elem, 8);
                log.mark(q.usedAddress() + 2, 2);
            }
        } finally {
            logLock.readLock().unlock();
        }
    }

    /** @return the host memory behind {@code [address, address + length)}, which one table section must hold */
    private MemorySegment host(long address, long length) {
        for (MemorySection s : table) {
            if (address >= s.address() && address + length <= s.end()) {
                return s.ramBlock().orElseThrow().host().asSlice(s.offsetInBlock() + address - s.address(), length);
            }
        }
        throw new IllegalStateException(String.format("%s: guest range [0x%x, +%d) is not in the vhost memory "
                + "table (%d sections)", name, address, length, table.size()));
    }

    /** @return the log the dev holds now, if it logs (for tests) */
    VhostLog log() {
        return log;
    }

    // ---- statistics

    /** @return bytes written by DMA */
    public long dmaBytes() {
        return dmaBytes.get();
    }

    /** @return used ring elements written */
    public long usedWrites() {
        return usedWrites.get();
    }

    /** @return log syncs seen */
    public long syncs() {
        return syncs;
    }

    /** @return memory section scans made (as logger, or in every-dev mode) */
    public long sectionScans() {
        return sectionScans;
    }

    /** @return log marks taken into RAM */
    public long marksTaken() {
        return marksTaken;
    }

    /** @return nanoseconds spent scanning memory sections */
    public long scanNanos() {
        return scanNanos;
    }

    /** @return log resizes */
    public long resizes() {
        return resizes;
    }

    /** Frees the dev's word buffer; it must be unregistered already. */
    void close() {
        arena.close();
    }

    @Override
    public String toString() {
        return name;
    }
}
