package dev.ferry.cli;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.OptionalDouble;
import java.util.concurrent.locks.LockSupport;
import java.util.function.ToLongFunction;

/**
 * The CPU time QEMU spends on one migration, both processes, read from outside: qemu-peer runs
 * the two QEMUs as its children and reports only QEMU's own figures, and timing the whole script
 * would count the guest's boot and prefill. A {@link Sampler} reads each QEMU's CPU time (user
 * and system, all threads: {@code /proc/PID/stat}, in clock ticks of 10 ms) every 10 ms while
 * qemu-peer runs; {@link #overMigration} then takes the part that falls inside the migration.
 *
 * <p><b>Where the migration is.</b> The destination QEMU ({@code -incoming}) idles from its
 * start until the source connects: the migration starts where its longest stretch of unchanged
 * CPU time ends, and lasts QEMU's own {@code total-time}. The source's CPU inside that window
 * counts in full, as Ferry's bench counts its whole process (the guest's vCPU included).
 */
final class QemuCpu {

    /** One reading: CPU nanoseconds of the source and destination QEMU, -1 where not (yet) known. */
    record Sample(long nanos, long sourceCpu, long destinationCpu) {
    }

    private static final long PERIOD_NANOS = 10_000_000L;
    /** The destination's idle stretch lasts through the guest's boot and warm-up: seconds. */
    private static final long MIN_IDLE_NANOS = 200_000_000L;

    private QemuCpu() {
    }

    /** Reads the CPU time of the QEMU processes under one qemu-peer run until closed. */
    static final class Sampler implements AutoCloseable {

        private final ProcessHandle peer;
        private final List<Sample> samples = new ArrayList<>();
        private final Thread thread;
        private volatile boolean stop;
        private ProcessHandle source;
        private ProcessHandle destination;

        Sampler(ProcessHandle peer) {
            this.peer = peer;
            this.thread = Thread.ofPlatform().name("qemu-cpu").daemon(true).start(this::run);
        }

        private void run() {
            while (!stop) {
                if (source == null || destination == null) {
                    find();
                }
                long now = System.nanoTime();
                long src = cpu(source);
                long dst = cpu(destination);
                synchronized (samples) {
                    samples.add(new Sample(now, src, dst));
                }
                LockSupport.parkNanos(PERIOD_NANOS);
            }
        }

        /** qemu-peer starts the destination with {@code -incoming} and both with a QMP socket. */
        private void find() {
            peer.descendants().forEach(p -> {
                List<String> args = p.info().arguments().map(List::of).orElse(List.of());
                if (args.contains("-incoming")) {
                    destination = p;
                } else if (args.contains("-qmp")) {
                    source = p;
                }
            });
        }

        private static long cpu(ProcessHandle p) {
            return p == null ? -1 : p.info().totalCpuDuration().map(Duration::toNanos).orElse(-1L);
        }

        /** @return the readings so far */
        List<Sample> samples() {
            synchronized (samples) {
                return List.copyOf(samples);
            }
        }

        @Override
        public void close() {
            stop = true;
            LockSupport.unpark(thread);
            try {
                thread.join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    /**
     * @param totalTimeMs QEMU's total-time of the migration
     * @return CPU-seconds both QEMUs spent from the migration's start to its end; empty if the
     *         readings do not show where it started, or stop before it ended
     */
    static OptionalDouble overMigration(List<Sample> samples, long totalTimeMs) {
        Optional<Integer> idleEnd = endOfLongestIdle(samples);
        if (idleEnd.isEmpty()) {
            return OptionalDouble.empty();
        }
        long start = samples.get(idleEnd.get()).nanos();
        long end = start + totalTimeMs * 1_000_000L;
        double cpu = 0;
        for (ToLongFunction<Sample> process : List.<ToLongFunction<Sample>>of(Sample::sourceCpu,
                Sample::destinationCpu)) {
            OptionalDouble atStart = at(samples, process, start);
            OptionalDouble atEnd = at(samples, process, end);
            if (atStart.isEmpty() || atEnd.isEmpty()) {
                return OptionalDouble.empty();
            }
            cpu += atEnd.getAsDouble() - atStart.getAsDouble();
        }
        return OptionalDouble.of(cpu / 1e9);
    }

    /** @return the last reading of the destination's longest unchanged stretch that a rise ends */
    private static Optional<Integer> endOfLongestIdle(List<Sample> samples) {
        Integer best = null;
        long bestLength = MIN_IDLE_NANOS - 1;
        int from = -1;
        for (int i = 0; i < samples.size(); i++) {
            long cpu = samples.get(i).destinationCpu();
            if (cpu < 0) {
                from = -1;
                continue;
            }
            if (from < 0) {
                from = i;
            } else if (cpu != samples.get(i - 1).destinationCpu()) {
                long length = samples.get(i - 1).nanos() - samples.get(from).nanos();
                if (cpu > samples.get(i - 1).destinationCpu() && length > bestLength) {
                    best = i - 1;
                    bestLength = length;
                }
                from = i;
            }
        }
        return Optional.ofNullable(best);
    }

    /** @return a process's CPU time at {@code nanos}, between the readings either side of it */
    private static OptionalDouble at(List<Sample> samples, ToLongFunction<Sample> process, long nanos) {
        for (int i = 1; i < samples.size(); i++) {
            Sample a = samples.get(i - 1);
            Sample b = samples.get(i);
            if (a.nanos() <= nanos && nanos <= b.nanos()) {
                long ca = process.applyAsLong(a);
                long cb = process.applyAsLong(b);
                if (ca < 0 || cb < 0) {
                    return OptionalDouble.empty();
                }
                double f = b.nanos() == a.nanos() ? 0 : (nanos - a.nanos()) / (double) (b.nanos() - a.nanos());
                return OptionalDouble.of(ca + f * (cb - ca));
            }
        }
        return OptionalDouble.empty();
    }
}
