package dev.ferry.machine;

import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

/**
 * What a vCPU loop reports to, between guest steps: pages written (for pacing and statistics),
 * pause, throttle and shutdown. The same object serves the software vCPU (called every few
 * pages) and the KVM vCPU (called on each pacing port exit, where the host sleeps the vCPU).
 */
public final class VcpuControl {

    /** Throttle time slice, as QEMU's CPU_THROTTLE_TIMESLICE_NS (10 ms, softmmu/cpu-throttle.c). */
    static final long THROTTLE_TIMESLICE_NS = 10_000_000L;

    private final int index;
    private final RunState runState;
    private final double pagesPerSecond;
    private final AtomicLong pagesWritten = new AtomicLong();
    private volatile int throttlePercent;

    // Pacing and throttle bookkeeping, touched by the vCPU thread only.
    private long paceStartNanos;
    private long pacedPages;
    private long runSinceThrottleNanos;
    private long lastCheckNanos;

    VcpuControl(int index, RunState runState, double pagesPerSecond) {
        this.index = index;
        this.runState = runState;
        this.pagesPerSecond = pagesPerSecond;
    }

    /** @return this vCPU's index */
    public int index() {
        return index;
    }

    /** @return pages the vCPU has written since it started */
    public long pagesWritten() {
        return pagesWritten.get();
    }

    /** @return the throttle, in percent of time the vCPU sleeps */
    public int throttlePercent() {
        return throttlePercent;
    }

    void setThrottle(int percent) {
        if (percent < 0 || percent > 99) {
            throw new IllegalArgumentException("throttle must be 0 to 99 percent: " + percent);
        }
        throttlePercent = percent;
    }

    /**
     * Accounts {@code pages} just written, then sleeps as the rate target and the throttle
     * demand, and parks while the machine is paused.
     *
     * @return false when the machine shuts down and the vCPU loop must return
     */
    public boolean checkpoint(long pages) {
        pagesWritten.addAndGet(pages);
        long now = System.nanoTime();
        if (lastCheckNanos == 0) {
            lastCheckNanos = now;
            paceStartNanos = now;
        }
        int throttle = throttlePercent;
        // Only time under a throttle counts: time run unthrottled must not be charged as one long
        // sleep when a throttle is set later. It is wall time, pacing sleeps included, as QEMU's
        // throttle timer runs on wall time: counting only the instants spent writing let a paced
        // guest keep a fifth of its rate at 99%, and a migration that could converge never did.
        runSinceThrottleNanos = throttle > 0 ? runSinceThrottleNanos + now - lastCheckNanos : 0;
        if (throttle > 0 && runSinceThrottleNanos >= THROTTLE_TIMESLICE_NS) {
            // As QEMU's cpu_throttle_thread: sleep pct / (1 - pct) of the time run.
            long sleep = runSinceThrottleNanos * throttle / (100 - throttle);
            sleepNanos(sleep);
            runSinceThrottleNanos = 0;
            // Time spent throttled does not earn pacing credit.
            paceStartNanos += sleep;
        }
        lastCheckNanos = System.nanoTime();
        if (pagesPerSecond > 0) {
            pacedPages += pages;
            long due = paceStartNanos + (long) (pacedPages * 1e9 / pagesPerSecond);
            long ahead = due - System.nanoTime();
            if (ahead > 0) {
                sleepNanos(ahead);
            } else if (ahead < -200_000_000L) {
                // Far behind (a pause, a slow host): do not burst to catch up, restart the schedule.
                paceStartNanos = System.nanoTime();
                pacedPages = 0;
            }
        }
        boolean go = true;
        if (runState.pauseRequested()) {
            long before = System.nanoTime();
            go = runState.checkpoint();
            // Paused time neither earns pacing credit nor counts as run time.
            long paused = System.nanoTime() - before;
            paceStartNanos += paused;
            lastCheckNanos += paused;
        } else if (runState.isShutdown()) {
            go = false;
        }
        return go;
    }

    /** Sleeps, in slices, so that a pause or shutdown is noticed within a few milliseconds. */
    private void sleepNanos(long nanos) {
        long end = System.nanoTime() + nanos;
        long left = nanos;
        while (left > 0) {
            LockSupport.parkNanos(Math.min(left, 5_000_000L));
            if (runState.pauseRequested() || runState.isShutdown()) {
                return;
            }
            left = end - System.nanoTime();
        }
    }


    @Override
    public String toString() {
        return "vCPU " + index;
    }
}
