package dev.ferry.migration.dirtyrate;

import dev.ferry.api.DirtyTrackerProvider;
import dev.ferry.machine.Machine;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.MemfdRamBlock;
import dev.ferry.migration.bootstrap.TrackedMachine;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Consumer;

/**
 * Measures how fast a running guest dirties memory, as its trackers see it (QEMU's
 * calc-dirty-rate in dirty-bitmap mode): start dirty logging, sync at a fixed interval, and
 * count the pages each sync reports. Syncing often matters: a page written twice between two
 * syncs is one dirty page, so with long intervals a random workload seems slower than it is.
 */
public final class DirtyRateMeasurement {

    /** QEMU's migration syncs about every 100 ms under load; the same default here. */
    public static final Duration DEFAULT_SYNC_INTERVAL = Duration.ofMillis(100);
    private static final double MIB = 1024.0 * 1024.0;

    private final TrackedMachine tracked;
    private final Duration duration;
    private final Duration syncInterval;

    /**
     * @param tracked      the machine and its trackers; its vCPUs are started if they are not
     * @param duration     how long to measure
     * @param syncInterval time between syncs
     */
    public DirtyRateMeasurement(TrackedMachine tracked, Duration duration, Duration syncInterval) {
        if (duration.isNegative() || duration.isZero()) {
            throw new IllegalArgumentException("measurement time must be positive");
        }
        if (syncInterval.toMillis() < 1 || syncInterval.compareTo(duration) > 0) {
            throw new IllegalArgumentException("sync interval must be at least 1 ms and at most the measurement time");
        }
        this.tracked = tracked;
        this.duration = duration;
        this.syncInterval = syncInterval;
    }

    /**
     * Runs the measurement.
     *
     * @param progress told the fraction done (0 to 1) and the rate so far, after each sync
     */
    public DirtyRateResult run(Consumer<double[]> progress) {
        Machine machine = tracked.machine();
        List<MemfdRamBlock> blocks = machine.memory().ramBlocks();
        List<DirtyBitmap> scratch = new ArrayList<>();
        for (MemfdRamBlock b : blocks) {
            scratch.add(new DirtyBitmap(b.pages()));
        }
        machine.start();
        machine.resume();
        machine.memory().globalDirtyLogStart();
        try {
            // The first sync reports what logging start left set (KVM's initially-set bitmap,
            // pages written since): prime with it, then count from a clean slate.
            syncAndCount(machine, blocks, scratch);
            long start = System.nanoTime();
            long pagesAtStart = machine.pagesWritten();
            long end = start + duration.toNanos();
            long interval = syncInterval.toNanos();
            long next = start + interval;
            long syncs = 0;
            long pages = 0;
            long costTotal = 0;
            long costMax = 0;
            long lastSync = start;
            while (lastSync < end) {
                long wait = next - System.nanoTime();
                if (wait > 0) {
                    LockSupport.parkNanos(wait);
                    continue;
                }
                long t0 = System.nanoTime();
                pages += syncAndCount(machine, blocks, scratch);
                long t1 = System.nanoTime();
                syncs++;
                costTotal += t1 - t0;
                costMax = Math.max(costMax, t1 - t0);
                lastSync = t0;
                next += interval;
                machine.vcpuFailure().ifPresent(e -> {
                    throw new IllegalStateException("a vCPU stopped: " + e.getMessage(), e);
                });
                double seconds = (lastSync - start) / 1e9;
                progress.accept(new double[]{Math.min(1, (lastSync - start) / (double) duration.toNanos()),
                        seconds > 0 ? pages * 4096 / MIB / seconds : 0});
            }
            long written = machine.pagesWritten() - pagesAtStart;
            double seconds = (lastSync - start) / 1e9;
            int pageSize = blocks.getFirst().pageSize();
            return new DirtyRateResult(machine.accelerator().name(),
                    tracked.plan().trackers().stream().map(DirtyTrackerProvider::name).toList(), seconds,
                    pages * pageSize / MIB / seconds, written * pageSize / MIB / seconds, syncs, pages,
                    syncs == 0 ? 0 : costTotal / 1e3 / syncs, costMax / 1e3);
        } finally {
            machine.memory().globalDirtyLogStop();
            machine.pause();
        }
    }

    /**
     * One sync: every tracker reports, then the migration client's bits are counted and dropped,
     * and each block's log is cleared (QEMU's dirtyrate_manual_reset_protect): a tracker that
     * defers re-protection until the pages are sent (KVM's manual protect) would otherwise report
     * the same pages again on every sync, since nothing here sends them.
     */
    private static long syncAndCount(Machine machine, List<MemfdRamBlock> blocks, List<DirtyBitmap> scratch) {
        machine.memory().globalDirtyLogSync(false);
        long n = 0;
        for (int i = 0; i < blocks.size(); i++) {
            DirtyBitmap s = scratch.get(i);
            MemfdRamBlock block = blocks.get(i);
            n += block.syncDirtyBitmap(s);
            s.clearAll();
            machine.systemMemory().logClear(block, 0, block.size());
        }
        return n;
    }
}
