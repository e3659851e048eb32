package dev.ferry.migration.soak;

import dev.ferry.machine.Machine;
import dev.ferry.machine.MachineConfig;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.SequentialImage;
import dev.ferry.machine.workload.Workload;
import dev.ferry.migration.Incoming;
import dev.ferry.migration.Migration;
import dev.ferry.migration.MigrationParameters;
import dev.ferry.migration.MigrationStats;
import dev.ferry.migration.MigrationStatus;
import dev.ferry.migration.bootstrap.Bootstrap;
import dev.ferry.migration.bootstrap.Plan;
import dev.ferry.migration.bootstrap.TrackedMachine;
import dev.ferry.migration.channel.Channels;
import dev.ferry.migration.channel.Connection;
import dev.ferry.migration.channel.MigrationUri;
import dev.ferry.migration.soak.SoakConfig.Fault;
import dev.ferry.migration.soak.SoakConfig.Transport;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Soak runs: a migration drawn from a seed ({@link SoakConfig}), with a fault injected where the
 * seed says, then checked as a user would check it.
 *
 * <ul>
 *   <li>Completed: the destination proved its RAM is the source's (the return path's digests, or
 *       for a file the digests saved in it), its guest runs, and a sequential guest's image is
 *       consistent and its counters carry on from exactly where the source stopped.</li>
 *   <li>Failed or cancelled: no destination guest runs, a partial file is refused, and the
 *       source guest runs on, unthrottled, its sequential image consistent.</li>
 * </ul>
 *
 * Anything else is a finding: pages lost, a copy running twice, a run that did not end.
 */
public final class Soak {

    /** How a run ended. */
    public enum Outcome {
        /** Completed, and the destination's guest is the source's. */
        VERIFIED("verified"),
        /** A fault stopped it, and the source guest runs on with nothing lost. */
        FAILED_SAFELY("failed safely"),
        /** Failed without a fault (did not converge, say), the source guest safe. */
        FAILED_UNFAULTED("failed, no fault"),
        /**
         * The link failed after the source said GO and before the destination confirmed: the
         * destination discarded its copy, and the source keeps its guest stopped and intact, as
         * it must when it cannot know whether the other copy runs (the user resumes it).
         */
        STOPPED_IN_DOUBT("stopped, in doubt"),
        /** Pages lost, an image broken, two copies running, a partial save accepted: a bug. */
        BROKEN("BROKEN"),
        /** Did not end within {@link #HANG_SECONDS}. */
        HANG("HANG");

        private final String word;

        Outcome(String word) {
            this.word = word;
        }

        /** @return the word tables use */
        public String word() {
            return word;
        }

        /** @return whether the run found a defect */
        public boolean isFinding() {
            return this == BROKEN || this == HANG;
        }
    }

    /**
     * One run.
     *
     * @param config  what was run
     * @param outcome how it ended
     * @param detail  the migration's error or the finding, else empty
     * @param millis  how long the run took
     */
    public record RunResult(SoakConfig config, Outcome outcome, String detail, long millis) {
    }

    /** A run that takes longer than this hangs: the longest migration is bounded by its 60 s timeout. */
    public static final int HANG_SECONDS = 120;
    private static final Duration MIGRATION_TIMEOUT = Duration.ofSeconds(60);

    private final Bootstrap bootstrap;
    private final Path scratch;

    /**
     * @param bootstrap the plugins to build guests with
     * @param scratch   a directory for unix sockets and saved files
     */
    public Soak(Bootstrap bootstrap, Path scratch) {
        this.bootstrap = bootstrap;
        this.scratch = scratch;
    }

    /** Runs one configuration and checks it; a run that hangs is left behind and reported. */
    public RunResult run(SoakConfig c) {
        long start = System.nanoTime();
        CompletableFuture<RunResult> result = new CompletableFuture<>();
        Thread t = Thread.ofPlatform().name("soak-" + c.seed()).daemon().start(() -> {
            try {
                result.complete(runChecked(c, start));
            } catch (Throwable e) {
                result.complete(new RunResult(c, Outcome.BROKEN, "the run threw " + e, millisSince(start)));
            }
        });
        try {
            return result.get(HANG_SECONDS, TimeUnit.SECONDS);
        } catch (java.util.concurrent.TimeoutException e) {
            StringBuilder where = new StringBuilder();
            for (StackTraceElement f : t.getStackTrace()) {
                if (where.length() < 300) {
                    where.append(where.isEmpty() ? "" : " < ").append(f);
                }
            }
            return new RunResult(c, Outcome.HANG, "no end after " + HANG_SECONDS + " s, at " + where, millisSince(start));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return new RunResult(c, Outcome.BROKEN, "interrupted", millisSince(start));
        } catch (java.util.concurrent.ExecutionException e) {
            throw new AssertionError(e); // completed by hand, never exceptionally
        }
    }

    private RunResult runChecked(SoakConfig c, long start) throws Exception {
        Workload w = new Workload(c.pattern(), 0, 0, c.rateMiBps(), Workload.PAGE_SIZE, 0.1, 0.9, c.seed() | 1);
        Plan plan = bootstrap.plan(c.accelerator(), c.trackers(), Map.of());
        long ram = (long) c.memoryMiB() << 20;
        MigrationParameters params = MigrationParameters.defaults().withMaxBandwidth(c.maxBandwidth())
                .withTimeout(c.fault() == Fault.TIMEOUT ? Duration.ofMillis(c.faultAtMillis()) : MIGRATION_TIMEOUT);
        Incoming incoming = bootstrap.incoming(ram, false, Incoming.DeviceLoad.BATCHED);
        ScheduledExecutorService faults = Executors.newSingleThreadScheduledExecutor(r -> Thread.ofPlatform()
                .name("soak-fault").daemon().unstarted(r));
        try (TrackedMachine src = bootstrap.build(plan, MachineConfig.of(ram, c.vcpus(), w).withPreallocate(false),
                List.of())) {
            if (c.pattern() != Pattern.SEQUENTIAL) {
                // Data in half of RAM, so that the migration sends it and lasts long enough for a
                // fault to strike mid-way (zero pages cost a flag each). The upper half: a KVM
                // guest's code and page tables sit at the bottom; a sequential image must start
                // from zeros.
                long half = src.machine().ram().host().byteSize() / 2;
                src.machine().ram().host().asSlice(half).fill((byte) (c.seed() | 1));
            }
            src.machine().start();
            Thread.sleep(100);
            Ends ends = open(c, incoming);
            try (ends) {
                Migration migration = new Migration(src, ends.source, params);
                switch (c.fault()) {
                    case CUT -> faults.schedule(() -> closeQuietly(ends.source), c.faultAtMillis(), TimeUnit.MILLISECONDS);
                    case KILL_DESTINATION -> faults.schedule(() -> {
                        Connection d = ends.destinationEnd.get();
                        if (d != null) {
                            closeQuietly(d);
                        }
                    }, c.faultAtMillis(), TimeUnit.MILLISECONDS);
                    case CANCEL -> faults.schedule(migration::cancel, c.faultAtMillis(), TimeUnit.MILLISECONDS);
                    case NONE, TIMEOUT -> {
                        // TIMEOUT is the migration's own parameter.
                    }
                }
                MigrationStats stats = migration.run(s -> { });
                faults.shutdownNow();
                closeQuietly(ends.source);
                Optional<Incoming.Result> dst = ends.destination(incoming);
                boolean completed = stats.status() == MigrationStatus.COMPLETED;
                String problem;
                boolean inDoubt = false;
                if (dst.isPresent()) {
                    // The destination has the guest. Even if the source then failed (the link cut
                    // after it said GO), it must be the source's guest, and the source's copy must
                    // stay stopped: two running copies are the worst outcome.
                    problem = !completed && c.pattern() != Pattern.IDLE && makesProgress(src.machine())
                            ? "the migration failed (" + stats.error() + "), but the destination runs the guest and "
                            + "so does the source"
                            : checkDestination(c, src.machine(), dst.get(), stats);
                } else if (completed) {
                    problem = "the source completed, but the destination has no guest";
                } else if (stats.error().startsWith(Migration.IN_DOUBT)) {
                    problem = checkSourceStoppedIntact(c, src.machine());
                    inDoubt = true;
                } else {
                    problem = checkSourceRunsOn(c, src.machine());
                }
                if (problem != null) {
                    return new RunResult(c, Outcome.BROKEN, problem + " (the migration: " + stats.status().qemuName()
                            + (stats.error().isEmpty() ? "" : ", " + stats.error()) + ")", millisSince(start));
                }
                Outcome o = dst.isPresent() ? Outcome.VERIFIED : inDoubt ? Outcome.STOPPED_IN_DOUBT
                        : c.fault() == Fault.NONE ? Outcome.FAILED_UNFAULTED : Outcome.FAILED_SAFELY;
                return new RunResult(c, o, stats.error(), millisSince(start));
            }
        } finally {
            faults.shutdownNow();
        }
    }

    /** @return what is wrong with the guest the destination received, or null */
    private static String checkDestination(SoakConfig c, Machine src, Incoming.Result r, MigrationStats stats)
            throws InterruptedException {
        try (Machine dst = r.machine()) {
            Incoming.Verification expected = c.transport() == Transport.FILE ? Incoming.Verification.BY_SAVED_DIGESTS
                    : Incoming.Verification.BY_SOURCE;
            if (r.verification() != expected) {
                return "completed, but the destination's RAM is " + r.verification() + ", not " + expected;
            }
            if (r.pages() != stats.normal() + stats.duplicate()) {
                return "the source sent " + (stats.normal() + stats.duplicate()) + " pages, the destination loaded "
                        + r.pages();
            }
            if (c.pattern() == Pattern.SEQUENTIAL) {
                // The source stays stopped after a completed migration: its image is where the
                // destination must carry on from.
                Workload w = src.config().workload();
                long[] stopped = SequentialImage.steps(src.ram().host(), w, c.vcpus());
                Thread.sleep(200);
                dst.pause();
                Optional<String> bad = SequentialImage.check(dst.ram().host(), w, c.vcpus());
                if (bad.isPresent()) {
                    return "the destination's image is broken: " + bad.get();
                }
                long advanced = SequentialImage.advance(stopped, SequentialImage.steps(dst.ram().host(), w, c.vcpus()),
                        w, src.config().ramSize());
                if (advanced != dst.pagesWritten()) {
                    return "the destination's counters moved " + advanced + " pages, its vCPUs wrote "
                            + dst.pagesWritten() + ": it did not carry on from where the source stopped";
                }
                dst.resume();
            }
            if (c.pattern() != Pattern.IDLE && !makesProgress(dst)) {
                return "the destination's guest does not run";
            }
            if (dst.vcpuFailure().isPresent()) {
                return "a destination vCPU failed: " + dst.vcpuFailure().get().getMessage();
            }
        }
        return null;
    }

    /** @return what is wrong with a source that must keep its guest stopped and intact, or null */
    private static String checkSourceStoppedIntact(SoakConfig c, Machine src) throws InterruptedException {
        if (c.pattern() != Pattern.IDLE && makesProgress(src)) {
            return "the source runs its guest again although it told the destination to run it";
        }
        if (c.pattern() == Pattern.SEQUENTIAL) {
            Optional<String> bad = SequentialImage.check(src.ram().host(), src.config().workload(), c.vcpus());
            if (bad.isPresent()) {
                return "the source's stopped image is broken: " + bad.get();
            }
        }
        return null;
    }

    /** @return what is wrong with the source after a failed run (no destination guest), or null */
    private static String checkSourceRunsOn(SoakConfig c, Machine src) throws InterruptedException {
        if (src.throttle() != 0) {
            return "the source guest stays throttled at " + src.throttle() + "%";
        }
        if (src.vcpuFailure().isPresent()) {
            return "a source vCPU failed: " + src.vcpuFailure().get().getMessage();
        }
        if (c.pattern() != Pattern.IDLE && !makesProgress(src)) {
            return "the source guest does not run on: " + vcpuThreads();
        }
        if (c.pattern() == Pattern.SEQUENTIAL) {
            src.pause();
            try {
                Optional<String> bad = SequentialImage.check(src.ram().host(), src.config().workload(), c.vcpus());
                if (bad.isPresent()) {
                    return "the source's image is broken: " + bad.get();
                }
            } finally {
                src.resume();
            }
        }
        return null;
    }

    /** @return where the vCPU threads are, for a finding about a guest that does not run */
    private static String vcpuThreads() {
        StringBuilder sb = new StringBuilder();
        Thread.getAllStackTraces().forEach((t, frames) -> {
            if (t.getName().startsWith("vcpu-")) {
                sb.append(sb.isEmpty() ? "" : "; ").append(t.getName()).append(' ').append(t.getState());
                for (int i = 0; i < Math.min(4, frames.length); i++) {
                    sb.append(i == 0 ? " at " : " < ").append(frames[i].getMethodName());
                }
            }
        });
        return sb.isEmpty() ? "no vCPU thread" : sb.toString();
    }

    private static boolean makesProgress(Machine m) throws InterruptedException {
        long before = m.pagesWritten();
        for (int i = 0; i < 40; i++) {
            Thread.sleep(50);
            if (m.pagesWritten() > before) {
                return true;
            }
        }
        return false;
    }

    /** The two ends of a run's transport; the destination receives on its own thread. */
    private static final class Ends implements AutoCloseable {
        final Connection source;
        final AtomicReference<Connection> destinationEnd = new AtomicReference<>();
        private final CompletableFuture<Incoming.Result> received = new CompletableFuture<>();
        private final Channels.Listener listener;
        private final Path file;

        Ends(Connection source, Channels.Listener listener, Path file) {
            this.source = source;
            this.listener = listener;
            this.file = file;
        }

        void receiveOn(Incoming incoming, ConnectionSource where) {
            Thread.ofPlatform().name("soak-destination").daemon().start(() -> {
                try (Connection c = where.get()) {
                    destinationEnd.set(c);
                    received.complete(incoming.receive(c));
                } catch (Throwable e) {
                    received.completeExceptionally(e);
                }
            });
        }

        /** @return the destination's guest, if it received one */
        Optional<Incoming.Result> destination(Incoming incoming) throws InterruptedException {
            if (file != null) {
                // As `ferry incoming file:` would load it: a whole file loads, a partial one is refused.
                try (Channels.Listener l = Channels.listen(MigrationUri.parse("file:" + file)); Connection c = l.accept()) {
                    return Optional.of(incoming.receive(c));
                } catch (IOException refused) {
                    return Optional.empty();
                }
            }
            try {
                return Optional.of(received.get(30, TimeUnit.SECONDS));
            } catch (java.util.concurrent.ExecutionException | java.util.concurrent.TimeoutException e) {
                return Optional.empty();
            }
        }

        @Override
        public void close() throws IOException {
            closeQuietly(source);
            if (listener != null) {
                listener.close();
            }
            if (file != null) {
                Files.deleteIfExists(file);
            }
        }
    }

    @FunctionalInterface
    private interface ConnectionSource {
        Connection get() throws IOException;
    }

    private Ends open(SoakConfig c, Incoming incoming) throws IOException {
        return switch (c.transport()) {
            case IN_PROCESS -> {
                Connection[] pair = Channels.inProcessPair();
                Ends e = new Ends(pair[0], null, null);
                e.receiveOn(incoming, () -> pair[1]);
                yield e;
            }
            case TCP, UNIX -> {
                Channels.Listener l = Channels.listen(MigrationUri.parse(c.transport() == Transport.TCP
                        ? "tcp:127.0.0.1:0" : "unix:" + scratch.resolve("soak-" + Long.toHexString(c.seed()) + ".sock")));
                try {
                    Connection source = Channels.connect(MigrationUri.parse(l.address()));
                    Ends e = new Ends(source, l, null);
                    e.receiveOn(incoming, l::accept);
                    yield e;
                } catch (IOException | RuntimeException e) {
                    l.close();
                    throw e;
                }
            }
            case FILE -> {
                Path file = scratch.resolve("soak-" + Long.toHexString(c.seed()) + ".mig");
                yield new Ends(Channels.connect(MigrationUri.parse("file:" + file)), null, file);
            }
        };
    }

    private static void closeQuietly(Connection c) {
        try {
            c.close();
        } catch (IOException | RuntimeException ignored) {
            // A fault, or cleanup after one: the connection is going away either way.
        }
    }

    private static long millisSince(long start) {
        return (System.nanoTime() - start) / 1_000_000;
    }
}
