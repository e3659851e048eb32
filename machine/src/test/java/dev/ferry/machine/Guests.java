package dev.ferry.machine;

import dev.ferry.api.DirtyTracker;
import dev.ferry.api.Options;
import dev.ferry.machine.soft.SoftAcceleratorProvider;
import dev.ferry.machine.soft.SoftTrackerProvider;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.locks.LockSupport;

/** Small soft-accelerated guests for tests, wired by hand as Bootstrap.build would. */
public final class Guests {

    public static final long MIB = 1L << 20;

    private Guests() {
    }

    /** @return a paused machine on the soft accelerator, RAM not preallocated, no tracker */
    public static Machine soft(long ramSize, int vcpus, Workload workload) {
        return Machine.create(new MachineConfig(ramSize, vcpus, workload, java.util.Map.of(), false),
                new SoftAcceleratorProvider());
    }

    /** @return a paused machine on the soft accelerator with the soft tracker registered */
    public static Tracked softTracked(long ramSize, int vcpus, Workload workload) {
        Machine m = soft(ramSize, vcpus, workload);
        try {
            DirtyTracker t = new SoftTrackerProvider().create(m.context(Options.empty()));
            m.systemMemory().registerListener(t);
            return new Tracked(m, t);
        } catch (RuntimeException e) {
            m.close();
            throw e;
        }
    }

    /** @return a workload of every parameter given */
    public static Workload workload(Pattern p, double rate, int writeSize, long seed) {
        return new Workload(p, 0, 0, rate, writeSize, 0.1, 0.9, seed);
    }

    /** A machine and its registered tracker. */
    public record Tracked(Machine machine, DirtyTracker tracker) implements AutoCloseable {
        @Override
        public void close() {
            machine.pause();
            machine.systemMemory().unregisterListener(tracker);
            tracker.close();
            machine.close();
        }
    }

    /** @return a heap copy of a whole segment */
    public static byte[] copy(MemorySegment s) {
        return s.toArray(ValueLayout.JAVA_BYTE);
    }

    /** Sleeps about {@code millis} ms. */
    public static void sleep(long millis) {
        long end = System.nanoTime() + millis * 1_000_000L;
        long left;
        while ((left = end - System.nanoTime()) > 0) {
            LockSupport.parkNanos(left);
        }
    }

    /** Waits until the machine has written at least {@code pages} pages more, at most 10 s. */
    public static void awaitWrites(Machine m, long pages) {
        long target = m.pagesWritten() + pages;
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (m.pagesWritten() < target) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("the guest wrote " + m.pagesWritten() + " pages, expected " + target
                        + m.vcpuFailure().map(e -> "; a vCPU failed: " + e).orElse(""));
            }
            LockSupport.parkNanos(1_000_000L);
        }
    }
}
