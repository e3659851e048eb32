package dev.ferry.audit;

import com.google.common.primitives.Longs;
import dev.ferry.api.DirtyTracker;
import dev.ferry.api.MemoryListener;
import dev.ferry.machine.Machine;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.MemfdRamBlock;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Checks trackers against the truth and against each other, sync by sync. The truth is a copy
 * of guest RAM kept as a migration destination keeps it: taken whole when the audit starts,
 * then brought up to date with the pages the trackers report.
 *
 * <p>Each {@link #sync} asks the listeners to report one at a time
 * ({@link dev.ferry.memory.MemorySystem#globalDirtyLogSync(boolean, java.util.function.Consumer)})
 * and takes what each one marked before the next reports, so pages are attributed to the
 * tracker that reported them. It then clears the dirty log of what was reported (as the
 * migration does before it sends, so a tracker that re-arms protection on {@code logClear}
 * behaves as in a migration).
 *
 * <ul>
 *   <li>An <em>exact</em> sync, taken with the guest paused, compares every page of RAM with the
 *       copy: a page whose content changed was written, and one that no listener reported is
 *       <em>missed</em> — a page a migration would lose. A reported page whose content did not
 *       change is a false positive (harmless: it is sent twice).</li>
 *   <li>A sync taken while the guest runs copies the reported pages, as a migration sends
 *       them, and checks nothing yet; a later exact sync finds whatever they missed, since a
 *       page written and never reported still differs from the copy then.</li>
 * </ul>
 *
 * <p>Logging must be on ({@link dev.ferry.memory.MemorySystem#globalDirtyLogStart()}) before the
 * audit is made, and the guest paused while it copies RAM: a page written during the copy would
 * be reported with content the copy already holds (a false positive of the audit's making).
 * The audit syncs once as it starts and drops that report, as a migration's setup does. Marks
 * made between syncs (a tracker's reaper thread, an accelerator flushing a slot's log as the
 * slot goes away) are the tracker's when one is audited, and count as
 * {@link SyncReport#othersReported()} when several are.
 * RAM blocks that appear later are copied when first seen. Not thread-safe: one thread syncs.
 */
public final class TrackerAudit implements AutoCloseable {

    private final Machine machine;
    private final List<DirtyTracker> trackers;
    private final List<String> names;
    /** Where each listener's report goes: the index of its bitmaps in every {@link Block}. */
    private final Map<MemoryListener, Integer> reporterOf = new IdentityHashMap<>();
    /** Bitmap index of listeners that are not audited. */
    private final int others;
    /** Bitmap index of marks made between syncs: the tracker's own when one is audited. */
    private final int between;
    private final Map<MemfdRamBlock, Block> blocks = new LinkedHashMap<>();
    private final Arena arena = Arena.ofShared();
    private final List<SyncReport> reports = new ArrayList<>();
    /** Whether closing stops dirty logging: the audit started it ({@link #start}). */
    private boolean stopsLogging;

    /** One RAM block: its copy, and per reporter the pages reported in the current sync. */
    private static final class Block {
        final MemfdRamBlock ram;
        final MemorySegment copy;
        /** Index i: tracker i; then other listeners; then marks made between syncs. */
        final DirtyBitmap[] reported;
        final DirtyBitmap written;

        Block(MemfdRamBlock ram, MemorySegment copy, int reporters) {
            this.ram = ram;
            this.copy = copy;
            this.reported = new DirtyBitmap[reporters];
            for (int i = 0; i < reporters; i++) {
                reported[i] = new DirtyBitmap(ram.pages());
            }
            this.written = new DirtyBitmap(ram.pages());
        }
    }

    /**
     * Starts an audit of {@code trackers}, registered on {@code machine}, and copies its RAM.
     *
     * @throws IllegalStateException if dirty logging is off
     */
    public TrackerAudit(Machine machine, List<? extends DirtyTracker> trackers) {
        if (!machine.memory().globalDirtyLog()) {
            throw new IllegalStateException("start dirty logging before the audit copies RAM");
        }
        this.machine = machine;
        this.trackers = List.copyOf(trackers);
        this.names = this.trackers.stream().map(DirtyTracker::name).toList();
        for (int i = 0; i < this.trackers.size(); i++) {
            reporterOf.put(this.trackers.get(i), i);
        }
        this.others = this.trackers.size();
        // Marks made between syncs: a tracker's own reaper thread (the dirty ring's), an
        // accelerator flushing a slot's log as the slot goes away, a device marking as it
        // writes. With one tracker audited they count as its own; with several, as nobody's.
        this.between = this.trackers.size() == 1 ? 0 : this.trackers.size() + 1;
        // As the migration's setup does (QEMU's ram_init_bitmaps): one sync right away, whose
        // report is dropped. A tracker that starts with everything dirty (KVM's
        // KVM_DIRTY_LOG_INITIALLY_SET) says so here, not as false positives in the first sync.
        machine.memory().globalDirtyLogSync(false);
        for (MemfdRamBlock b : machine.memory().ramBlocks()) {
            b.syncDirtyBitmap(new DirtyBitmap(b.pages()));
            machine.systemMemory().logClear(b, 0, b.size());
        }
        addNewBlocks();
    }

    /**
     * Starts dirty logging on a running guest and an audit of {@code trackers}, pausing the guest
     * while RAM is copied, then lets it run again. Closing the audit stops logging.
     */
    public static TrackerAudit start(Machine machine, List<? extends DirtyTracker> trackers) {
        machine.pause();
        try {
            machine.memory().globalDirtyLogStart();
            try {
                TrackerAudit audit = new TrackerAudit(machine, trackers);
                audit.stopsLogging = true;
                return audit;
            } catch (RuntimeException | Error e) {
                machine.memory().globalDirtyLogStop();
                throw e;
            }
        } finally {
            machine.resume();
        }
    }

    /** @return the audited trackers' names, in the order of every report's lists */
    public List<String> trackerNames() {
        return names;
    }

    private void addNewBlocks() {
        for (MemfdRamBlock b : machine.memory().ramBlocks()) {
            blocks.computeIfAbsent(b, ram -> {
                MemorySegment copy = arena.allocate(ram.size(), 4096);
                MemorySegment.copy(ram.host(), 0, copy, 0, ram.size());
                return new Block(ram, copy, others + 2);
            });
        }
    }

    /**
     * Syncs once, attributing every reported page to its reporter.
     *
     * @param exact whether to compare RAM with the copy; pause the guest first (and keep other
     *              writers quiet), or writes that race the comparison count as missed
     * @return this sync's figures
     */
    public SyncReport sync(boolean exact) {
        addNewBlocks();
        blocks.values().forEach(b -> b.ram.syncDirtyBitmap(b.reported[between]));

        long[] syncNanos = new long[trackers.size()];
        long[] last = {System.nanoTime()};
        machine.memory().globalDirtyLogSync(false, listener -> {
            long now = System.nanoTime();
            int who = reporterOf.getOrDefault(listener, others);
            if (who < trackers.size()) {
                syncNanos[who] += now - last[0];
            }
            blocks.values().forEach(b -> b.ram.syncDirtyBitmap(b.reported[who]));
            last[0] = System.nanoTime();
        });

        long[] reported = new long[trackers.size()];
        long[] only = new long[trackers.size()];
        long[] falsePositives = new long[trackers.size()];
        long written = 0;
        long missed = 0;
        long othersReported = 0;
        List<String> firstMissed = new ArrayList<>();
        for (Block b : blocks.values()) {
            if (exact) {
                findWritten(b);
            }
            int words = b.written.wordCount();
            boolean any = false;
            for (int w = 0; w < words; w++) {
                long union = 0;
                for (DirtyBitmap r : b.reported) {
                    union |= r.word(w);
                }
                long wrote = exact ? b.written.word(w) : 0;
                if (union == 0 && wrote == 0) {
                    continue;
                }
                any |= union != 0;
                for (int i = 0; i < trackers.size(); i++) {
                    long mine = b.reported[i].word(w);
                    long rest = 0;
                    for (int j = 0; j < b.reported.length; j++) {
                        if (j != i) {
                            rest |= b.reported[j].word(w);
                        }
                    }
                    reported[i] += Long.bitCount(mine);
                    only[i] += Long.bitCount(mine & ~rest);
                    if (exact) {
                        falsePositives[i] += Long.bitCount(mine & ~wrote);
                    }
                }
                // With one tracker, the last bitmap stays empty: its between-sync marks are its own.
                othersReported += Long.bitCount(b.reported[others].word(w) | b.reported[others + 1].word(w));
                if (exact) {
                    written += Long.bitCount(wrote);
                    long lost = wrote & ~union;
                    missed += Long.bitCount(lost);
                    while (lost != 0 && firstMissed.size() < 10) {
                        firstMissed.add(b.ram.name() + ":" + (((long) w << 6) + Long.numberOfTrailingZeros(lost)));
                        lost &= lost - 1;
                    }
                }
            }
            if (any) {
                // As the migration does just before it sends: re-arm what was reported.
                machine.systemMemory().logClear(b.ram, 0, b.ram.size());
            }
            update(b, exact);
        }
        SyncReport r = new SyncReport(reports.size() + 1, exact, exact ? written : -1, Longs.asList(reported),
                Longs.asList(only), exact ? Longs.asList(falsePositives) : List.of(), othersReported,
                exact ? missed : -1, List.copyOf(firstMissed), Longs.asList(syncNanos));
        reports.add(r);
        return r;
    }

    /** Sets {@code written} to the pages whose content differs from the copy. */
    private static void findWritten(Block b) {
        b.written.clearAll();
        MemorySegment ram = b.ram.host();
        int ps = b.ram.pageSize();
        long size = b.ram.size();
        long at = 0;
        while (at < size) {
            long m = ram.asSlice(at).mismatch(b.copy.asSlice(at));
            if (m < 0) {
                break;
            }
            long page = (at + m) / ps;
            b.written.set(page);
            at = (page + 1) * ps;
        }
    }

    /** Brings the copy up to date and forgets this sync's reports. */
    private static void update(Block b, boolean exact) {
        MemorySegment ram = b.ram.host();
        int ps = b.ram.pageSize();
        int words = b.written.wordCount();
        for (int w = 0; w < words; w++) {
            long pages = exact ? b.written.word(w) : 0;
            for (DirtyBitmap r : b.reported) {
                pages |= r.takeWord(w);
            }
            while (pages != 0) {
                long page = ((long) w << 6) + Long.numberOfTrailingZeros(pages);
                MemorySegment.copy(ram, page * ps, b.copy, page * ps, ps);
                pages &= pages - 1;
            }
        }
        b.written.clearAll();
    }

    /** @return every sync so far, in order */
    public List<SyncReport> reports() {
        return List.copyOf(reports);
    }

    /** @return the figures of every sync so far, added up */
    public AuditTotals totals() {
        return AuditTotals.of(names, reports);
    }

    @Override
    public void close() {
        try {
            if (stopsLogging) {
                machine.memory().globalDirtyLogStop();
            }
        } finally {
            arena.close();
        }
    }
}
