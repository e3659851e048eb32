package dev.ferry.memory;

import dev.ferry.api.MemoryListener;
import dev.ferry.api.MemorySection;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Objects;

/**
 * A view of memory from one initiator, e.g. the CPUs' "memory" (QEMU's {@code AddressSpace}):
 * a root region, its current {@link FlatView}, and the listeners registered on it. Reads and
 * writes made through it (device emulation, the migration destination) go through the flat
 * view, and writes mark the pages dirty while they are logged.
 */
public final class AddressSpace {

    private final MemorySystem owner;
    private final String name;
    private final MemoryRegion root;
    // Copy on write: registration changes it under the memory system's lock, while logClear
    // walks it from the migration thread, which must not wait for a commit.
    private final List<MemoryListener> listeners = new java.util.concurrent.CopyOnWriteArrayList<>();
    // Listeners that sync once for everything (logSyncGlobal) rather than per section.
    private final java.util.Set<MemoryListener> globalSyncers = java.util.Collections.newSetFromMap(new IdentityHashMap<>());
    private volatile FlatView current;
    // Rendered on demand when the topology is read inside a transaction with changes pending.
    private FlatView uncommitted;

    AddressSpace(MemorySystem owner, String name, MemoryRegion root) {
        this.owner = owner;
        this.name = Objects.requireNonNull(name, "name");
        this.root = Objects.requireNonNull(root, "root");
    }

    /** @return the address space's name */
    public String name() {
        return name;
    }

    /** @return its root region */
    public MemoryRegion root() {
        return root;
    }

    /**
     * The current flat view. Inside a transaction with changes pending, the thread that holds
     * it sees its own uncommitted changes: a device loading its state in the middle of a batched
     * load (seed 003) reads the topology it has just built, without forcing an early commit and
     * without a listener pass. Everyone else sees the last committed view.
     */
    public FlatView flatView() {
        if (owner.updatePendingOnThisThread()) {
            if (uncommitted == null) {
                uncommitted = render();
            }
            return uncommitted;
        }
        return current;
    }

    /** @return the sections of the current flat view, in address order */
    public List<MemorySection> sections() {
        return flatView().sections();
    }

    FlatView render() {
        owner.countRender();
        return FlatView.render(name, root, owner.globalDirtyLog());
    }

    void install(FlatView view) {
        current = view;
        uncommitted = null;
    }

    void invalidateUncommitted() {
        uncommitted = null;
    }

    List<MemoryListener> listeners() {
        return listeners;
    }

    // ---- listeners

    /**
     * Registers a listener and replays the current topology to it: logGlobalStart if dirty
     * logging is on, then one pass of regionAdd (and logStart for logged sections).
     *
     * @throws IllegalArgumentException if the listener overrides both logSync and logSyncGlobal,
     *                                  or is registered already
     */
    public void registerListener(MemoryListener listener) {
        Objects.requireNonNull(listener, "listener");
        boolean perSection = overrides(listener, "logSync", MemorySection.class);
        boolean global = overrides(listener, "logSyncGlobal", boolean.class);
        if (perSection && global) {
            throw new IllegalArgumentException("listener " + listener.name()
                    + " implements both logSync and logSyncGlobal; a listener syncs per section or globally, not both");
        }
        owner.begin();
        try {
            if (owner.isRegistered(listener)) {
                throw new IllegalArgumentException("listener " + listener.name() + " is registered already");
            }
            int at = 0;
            while (at < listeners.size() && listeners.get(at).priority() <= listener.priority()) {
                at++;
            }
            listeners.add(at, listener);
            if (global) {
                globalSyncers.add(listener);
            }
            if (owner.globalDirtyLog()) {
                listener.logGlobalStart();
            }
            listener.begin();
            for (MemorySection s : current.sections()) {
                listener.regionAdd(s);
                if (s.dirtyLogMask() != 0) {
                    listener.logStart(s, 0, s.dirtyLogMask());
                }
            }
            listener.commit();
        } finally {
            owner.commit();
        }
    }

    /** Unregisters a listener: it sees logStop and regionDel for every section, then it is gone. */
    public void unregisterListener(MemoryListener listener) {
        owner.begin();
        try {
            if (!listeners.remove(listener)) {
                return;
            }
            globalSyncers.remove(listener);
            listener.begin();
            for (MemorySection s : current.sections()) {
                if (s.dirtyLogMask() != 0) {
                    listener.logStop(s, s.dirtyLogMask(), 0);
                }
                listener.regionDel(s);
            }
            listener.commit();
            if (owner.globalDirtyLog()) {
                listener.logGlobalStop();
            }
        } finally {
            owner.commit();
        }
    }

    private static boolean overrides(MemoryListener listener, String method, Class<?> parameter) {
        try {
            return listener.getClass().getMethod(method, parameter).getDeclaringClass() != MemoryListener.class;
        } catch (NoSuchMethodException e) {
            throw new AssertionError(e);
        }
    }

    /**
     * One listener pass from the current view to {@code next} (QEMU's
     * address_space_update_topology_pass, run twice): first deletions and log stops, listeners
     * in reverse priority order; then additions, log starts and nops, in priority order.
     */
    void updateTopology(FlatView next) {
        FlatView old = current;
        pass(old, next, false);
        pass(old, next, true);
        install(next);
    }

    private void pass(FlatView oldView, FlatView newView, boolean adding) {
        FlatRange[] olds = oldView.ranges();
        FlatRange[] news = newView.ranges();
        List<MemorySection> oldSections = oldView.sections();
        List<MemorySection> newSections = newView.sections();
        List<MemoryListener> forward = listeners;
        List<MemoryListener> reverse = listeners.reversed();
        int n = listeners.size();
        long calls = 0;
        int io = 0;
        int in = 0;
        while (io < olds.length || in < news.length) {
            FlatRange frold = io < olds.length ? olds[io] : null;
            FlatRange frnew = in < news.length ? news[in] : null;
            if (frold != null && (frnew == null || frold.address() < frnew.address()
                    || (frold.address() == frnew.address() && !frold.sameMapping(frnew)))) {
                if (!adding) {
                    MemorySection s = oldSections.get(io);
                    reverse.forEach(l -> l.regionDel(s));
                    calls += n;
                }
                io++;
            } else if (frold != null && frold.sameMapping(frnew)) {
                int oldMask = frold.dirtyLogMask();
                int newMask = frnew.dirtyLogMask();
                MemorySection s = newSections.get(in);
                if (!adding) {
                    if ((oldMask & ~newMask) != 0) {
                        reverse.forEach(l -> l.logStop(s, oldMask, newMask));
                        calls += n;
                    }
                } else {
                    if ((newMask & ~oldMask) != 0) {
                        forward.forEach(l -> l.logStart(s, oldMask, newMask));
                        calls += n;
                    }
                    forward.forEach(l -> l.regionNop(s));
                    calls += n;
                }
                io++;
                in++;
            } else {
                if (adding) {
                    MemorySection s = newSections.get(in);
                    forward.forEach(l -> l.regionAdd(s));
                    calls += n;
                }
                in++;
            }
        }
        owner.countListenerCalls(calls);
    }

    void logSync(boolean lastStage, java.util.function.Consumer<MemoryListener> afterEach) {
        for (MemoryListener l : listeners) {
            if (globalSyncers.contains(l)) {
                l.logSyncGlobal(lastStage);
            } else {
                for (MemorySection s : current.sections()) {
                    if (s.dirtyLogMask() != 0) {
                        l.logSync(s);
                    }
                }
            }
            afterEach.accept(l);
        }
    }

    /**
     * Tells listeners that the migration is about to send {@code [offset, offset + length)} of a
     * RAM block (QEMU's memory_region_clear_dirty_bitmap): every logged section overlapping it
     * gets logClear for the overlap.
     */
    public void logClear(MemfdRamBlock block, long offset, long length) {
        // No lock: the view is immutable and published through a volatile field, the listener
        // list copied on write; a listener registered meanwhile sees the next clear.
        for (MemorySection s : current.sections()) {
            if (s.dirtyLogMask() == 0 || s.ramBlock().orElse(null) != block) {
                continue;
            }
            long start = Math.max(offset, s.offsetInBlock());
            long end = Math.min(offset + length, s.offsetInBlock() + s.size());
            if (start < end) {
                for (MemoryListener l : listeners) {
                    l.logClear(s, start, end - start);
                }
            }
        }
    }

    // ---- accesses

    /**
     * Writes {@code src} at guest address {@code address}, across sections as needed. RAM is
     * written and its pages marked dirty; I/O regions get their handler's write.
     *
     * @throws IllegalArgumentException if part of the range is unmapped or read-only
     */
    public void write(long address, MemorySegment src) {
        FlatView view = committedOrNull();
        long done = 0;
        long length = src.byteSize();
        while (done < length) {
            long addr = address + done;
            FlatRange fr = rangeAt(view, addr);
            if (fr == null) {
                throw new IllegalArgumentException(String.format("write to unmapped guest address 0x%x in %s", addr, name));
            }
            if (fr.readOnly()) {
                throw new IllegalArgumentException(String.format("write to read-only guest address 0x%x (%s)",
                        addr, fr.region().name()));
            }
            long n = Math.min(length - done, fr.end() - addr);
            long inRegion = fr.offsetInRegion() + (addr - fr.address());
            MemfdRamBlock block = fr.region().ramBlock();
            if (block != null) {
                long offset = fr.region().ramOffset() + inRegion;
                MemorySegment.copy(src, done, block.host(), offset, n);
                block.setDirty(offset, n);
            } else {
                for (long k = 0; k < n; k++) {
                    fr.region().io().write(inRegion + k, src.get(ValueLayout.JAVA_BYTE, done + k), 1);
                }
            }
            done += n;
        }
    }

    /**
     * Reads guest memory at {@code address} into {@code dst}.
     *
     * @throws IllegalArgumentException if part of the range is unmapped
     */
    public void read(long address, MemorySegment dst) {
        FlatView view = committedOrNull();
        long done = 0;
        long length = dst.byteSize();
        while (done < length) {
            long addr = address + done;
            FlatRange fr = rangeAt(view, addr);
            if (fr == null) {
                throw new IllegalArgumentException(String.format("read from unmapped guest address 0x%x in %s", addr, name));
            }
            long n = Math.min(length - done, fr.end() - addr);
            long inRegion = fr.offsetInRegion() + (addr - fr.address());
            MemfdRamBlock block = fr.region().ramBlock();
            if (block != null) {
                MemorySegment.copy(block.host(), fr.region().ramOffset() + inRegion, dst, done, n);
            } else {
                for (long k = 0; k < n; k++) {
                    dst.set(ValueLayout.JAVA_BYTE, done + k, (byte) fr.region().io().read(inRegion + k, 1));
                }
            }
            done += n;
        }
    }

    /**
     * The view accesses go through: the committed one, or null inside a transaction with changes
     * pending on this thread. Then each access walks the region graph instead, so a device that
     * reads guest memory while the destination loads device state sees the topology loaded so far
     * without a render per read (seed 003: the load costs one render, at its commit).
     */
    private FlatView committedOrNull() {
        if (!owner.updatePendingOnThisThread()) {
            return current;
        }
        return uncommitted; // rendered already if someone asked for the whole view; else walk
    }

    private FlatRange rangeAt(FlatView view, long address) {
        if (view == null) {
            return FlatView.resolve(root, address);
        }
        int i = view.indexOf(address);
        return i < 0 ? null : view.range(i);
    }

    void close() {
        for (MemoryListener l : List.copyOf(listeners)) {
            unregisterListener(l);
        }
    }

    @Override
    public String toString() {
        return "AddressSpace " + name;
    }
}
