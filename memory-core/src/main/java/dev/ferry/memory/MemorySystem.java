package dev.ferry.memory;

import dev.ferry.api.DirtyClient;
import dev.ferry.api.MemoryListener;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;

/**
 * The memory of one machine: its regions, address spaces and RAM blocks, its transactions, and
 * global dirty logging. In QEMU this is process-wide state guarded by the big lock; here it is an
 * object the machine owns, guarded by its own lock, so several machines (a migration's source
 * and destination) live in one process.
 *
 * <p>Every topology change is a transaction. {@link #begin()}/{@link #commit()} nest; only the
 * outermost commit renders the flat views and makes one listener pass, which is what lets a
 * migration destination load all device state with one render (seed 003).
 */
public final class MemorySystem implements AutoCloseable {

    private final ReentrantLock lock = new ReentrantLock();
    private final Map<String, MemfdRamBlock> ramBlocks = new LinkedHashMap<>();
    private final List<AddressSpace> addressSpaces = new ArrayList<>();
    private int transactionDepth;
    private boolean updatePending;
    private boolean globalDirtyLog;
    private long commits;
    // Written under the lock, read from anywhere.
    private volatile long listenerCalls;
    private final java.util.concurrent.atomic.LongAdder renders = new java.util.concurrent.atomic.LongAdder();

    // ---- regions and RAM

    /**
     * Allocates a RAM block of shared memory (QEMU's memory-backend-memfd) and registers it.
     *
     * @throws IllegalArgumentException if the name is taken or the size is not page-aligned
     */
    public MemfdRamBlock allocateRam(String name, long size) {
        lock.lock();
        try {
            requireFreeName(name);
            return addRam(MemfdRamBlock.allocate(name, size));
        } finally {
            lock.unlock();
        }
    }

    /**
     * Registers a RAM block allocated beforehand (a memory backend made before its machine);
     * from here on this memory system owns it and closes it.
     *
     * @throws IllegalArgumentException if its name is taken
     */
    public MemfdRamBlock addRam(MemfdRamBlock block) {
        lock.lock();
        try {
            requireFreeName(block.name());
            ramBlocks.put(block.name(), block);
            return block;
        } finally {
            lock.unlock();
        }
    }

    private void requireFreeName(String name) {
        if (ramBlocks.containsKey(name)) {
            throw new IllegalArgumentException("a RAM block named " + name + " exists already");
        }
    }

    /** @return the RAM blocks, in allocation order */
    public List<MemfdRamBlock> ramBlocks() {
        lock.lock();
        try {
            return List.copyOf(ramBlocks.values());
        } finally {
            lock.unlock();
        }
    }

    /** @return a container region: maps nothing itself, only its subregions */
    public MemoryRegion container(String name, long size) {
        return new MemoryRegion(this, name, MemoryRegion.Kind.CONTAINER, size, null, null, null, 0);
    }

    /** @return a RAM region mapping the whole of {@code block} */
    public MemoryRegion ramRegion(String name, MemfdRamBlock block) {
        return new MemoryRegion(this, name, MemoryRegion.Kind.RAM, block.size(), block, null, null, 0);
    }

    /** @return an I/O region whose accesses go to {@code handler} */
    public MemoryRegion ioRegion(String name, long size, IoHandler handler) {
        return new MemoryRegion(this, name, MemoryRegion.Kind.IO, size, null, java.util.Objects.requireNonNull(handler),
                null, 0);
    }

    /** @return an alias showing {@code [offset, offset + size)} of {@code target} */
    public MemoryRegion alias(String name, MemoryRegion target, long offset, long size) {
        if (target.owner() != this) {
            throw new IllegalArgumentException("alias target " + target.name() + " belongs to another memory system");
        }
        return new MemoryRegion(this, name, MemoryRegion.Kind.ALIAS, size, null, null, target, offset);
    }

    /** @return a new address space rendering {@code root} (QEMU's address_space_init) */
    public AddressSpace addressSpace(String name, MemoryRegion root) {
        lock.lock();
        try {
            AddressSpace as = new AddressSpace(this, name, root);
            addressSpaces.add(as);
            as.install(as.render());
            return as;
        } finally {
            lock.unlock();
        }
    }

    // ---- transactions

    /** Opens a transaction; changes are seen once the outermost one commits. */
    public void begin() {
        lock.lock();
        transactionDepth++;
    }

    /** Closes a transaction; the outermost commit renders and tells listeners, once. */
    public void commit() {
        if (!lock.isHeldByCurrentThread() || transactionDepth == 0) {
            throw new IllegalStateException("commit without begin");
        }
        try {
            if (--transactionDepth == 0 && updatePending) {
                updatePending = false;
                commitTopology();
            }
        } finally {
            lock.unlock();
        }
    }

    /** Runs {@code changes} as one transaction. */
    public void transaction(Runnable changes) {
        begin();
        try {
            changes.run();
        } finally {
            commit();
        }
    }

    /** @return the depth of open transactions on this thread's behalf (0 outside one) */
    public int transactionDepth() {
        return lock.isHeldByCurrentThread() ? transactionDepth : 0;
    }

    /** @return how many topology passes have run; a measure of the cost seed 003 cuts */
    public long topologyCommits() {
        return commits;
    }

    /** @return how many flat views have been rendered, committed or on demand inside a transaction */
    public long flatViewRenders() {
        return renders.sum();
    }

    void countRender() {
        renders.increment();
    }

    /**
     * @return listener callbacks made by topology passes (begin, region add/del/nop, log
     *         start/stop, commit): what a commit costs the accelerator and every vhost dev
     */
    public long listenerCalls() {
        return listenerCalls;
    }

    void countListenerCalls(long n) {
        listenerCalls += n; // under the lock: passes run inside a commit
    }

    /** A change to the graph: done inside a transaction and marked pending. */
    void update(Runnable change) {
        begin();
        try {
            change.run();
            updatePending = true;
            addressSpaces.forEach(AddressSpace::invalidateUncommitted);
        } finally {
            commit();
        }
    }

    boolean updatePendingOnThisThread() {
        return lock.isHeldByCurrentThread() && transactionDepth > 0 && updatePending;
    }

    private void commitTopology() {
        commits++;
        List<FlatView> views = new ArrayList<>(addressSpaces.size());
        for (AddressSpace as : addressSpaces) {
            views.add(as.render());
        }
        updateRamBlockLogging(views);
        List<MemoryListener> all = allListeners();
        listenerCalls += 2L * all.size();
        all.forEach(MemoryListener::begin);
        try {
            for (int i = 0; i < addressSpaces.size(); i++) {
                addressSpaces.get(i).updateTopology(views.get(i));
            }
        } finally {
            // Even after a listener failed: a listener may hold something for the pass (KVM keeps
            // the vCPUs out of KVM_RUN while slots are replaced) and must hear that it is over.
            all.forEach(MemoryListener::commit);
        }
    }

    private void updateRamBlockLogging(List<FlatView> views) {
        Map<MemfdRamBlock, Integer> masks = new LinkedHashMap<>();
        for (MemfdRamBlock block : ramBlocks.values()) {
            masks.put(block, globalDirtyLog ? DirtyClient.MIGRATION.bit() : 0);
        }
        for (FlatView view : views) {
            for (FlatRange fr : view.ranges()) {
                MemfdRamBlock block = fr.region().ramBlock();
                if (block != null) {
                    masks.merge(block, fr.dirtyLogMask(), (a, b) -> a | b);
                }
            }
        }
        masks.forEach((block, mask) -> {
            if (block.dirtyLogMask() != mask) {
                block.setDirtyLogMask(mask);
            }
        });
    }

    /**
     * Every listener once, in address-space and priority order. Runs on every sync, with a
     * listener per vhost dev (hundreds): no quadratic dedupe, and no copy for the usual single
     * address space.
     */
    private List<MemoryListener> allListeners() {
        if (addressSpaces.size() == 1) {
            return List.copyOf(addressSpaces.getFirst().listeners());
        }
        java.util.Set<MemoryListener> seen = java.util.Collections.newSetFromMap(new java.util.IdentityHashMap<>());
        List<MemoryListener> all = new ArrayList<>();
        for (AddressSpace as : addressSpaces) {
            for (MemoryListener l : as.listeners()) {
                if (seen.add(l)) {
                    all.add(l);
                }
            }
        }
        return all;
    }

    // ---- global dirty logging

    /** @return whether global dirty logging (migration) is on */
    public boolean globalDirtyLog() {
        return globalDirtyLog;
    }

    /**
     * Starts dirty logging for migration (QEMU's memory_global_dirty_log_start): every listener
     * gets logGlobalStart, then every RAM section's mask gains the migration bit in one
     * topology pass (logStart per section).
     */
    public void globalDirtyLogStart() {
        begin();
        try {
            if (globalDirtyLog) {
                throw new IllegalStateException("dirty logging is already on");
            }
            globalDirtyLog = true;
            allListeners().forEach(MemoryListener::logGlobalStart);
            updatePending = true;
            addressSpaces.forEach(AddressSpace::invalidateUncommitted);
        } finally {
            commit();
        }
    }

    /** Stops dirty logging for migration (QEMU's memory_global_dirty_log_stop). */
    public void globalDirtyLogStop() {
        lock.lock();
        try {
            if (!globalDirtyLog) {
                return;
            }
            begin();
            try {
                globalDirtyLog = false;
                updatePending = true;
                addressSpaces.forEach(AddressSpace::invalidateUncommitted);
            } finally {
                commit();
            }
            // After the pass that stopped the sections, as in QEMU and unregisterListener:
            // logGlobalStart and logGlobalStop bracket the sections' logging.
            allListeners().forEach(MemoryListener::logGlobalStop);
        } finally {
            lock.unlock();
        }
    }

    /**
     * Asks every listener to report the pages written since the last sync (QEMU's
     * memory_global_dirty_log_sync): per-section listeners get logSync for every logged
     * section, global ones logSyncGlobal once; then everyone gets logGlobalAfterSync.
     *
     * @param lastStage true for the final sync, with the vCPUs stopped
     */
    public void globalDirtyLogSync(boolean lastStage) {
        globalDirtyLogSync(lastStage, l -> {
        });
    }

    /**
     * Syncs as {@link #globalDirtyLogSync(boolean)} does, and calls {@code afterEach} right after
     * each listener has reported, before the next one syncs: what the RAM blocks gained in
     * between is that listener's report. An audit compares trackers this way; with the vCPUs
     * paused, every listener sees the same writes.
     */
    public void globalDirtyLogSync(boolean lastStage, Consumer<MemoryListener> afterEach) {
        lock.lock();
        try {
            List<MemoryListener> all = allListeners();
            for (AddressSpace as : addressSpaces) {
                as.logSync(lastStage, afterEach);
            }
            all.forEach(MemoryListener::logGlobalAfterSync);
        } finally {
            lock.unlock();
        }
    }

    boolean isRegistered(MemoryListener listener) {
        for (AddressSpace as : addressSpaces) {
            if (as.listeners().contains(listener)) {
                return true;
            }
        }
        return false;
    }

    @Override
    public void close() {
        lock.lock();
        try {
            for (AddressSpace as : addressSpaces) {
                as.close();
            }
            addressSpaces.clear();
            ramBlocks.values().forEach(MemfdRamBlock::close);
            ramBlocks.clear();
        } finally {
            lock.unlock();
        }
    }
}
