package dev.ferry.testkit;

import dev.ferry.api.AcceleratorRequirements;
import dev.ferry.api.Availability;
import dev.ferry.api.DirtyTrackerProvider;
import dev.ferry.api.Options;
import dev.ferry.audit.AuditTotals;
import dev.ferry.audit.SyncReport;
import dev.ferry.audit.TrackerAudit;
import dev.ferry.machine.Machine;
import dev.ferry.machine.MachineConfig;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import dev.ferry.memory.IoHandler;
import dev.ferry.memory.MemfdRamBlock;
import dev.ferry.memory.MemoryRegion;
import dev.ferry.migration.Incoming;
import dev.ferry.migration.LoopbackMigration;
import dev.ferry.migration.MigrationParameters;
import dev.ferry.migration.MigrationStats;
import dev.ferry.migration.MigrationStatus;
import dev.ferry.migration.bootstrap.Bootstrap;
import dev.ferry.migration.bootstrap.MigrationSettings;
import dev.ferry.migration.bootstrap.MigrationTarget;
import dev.ferry.migration.bootstrap.Orchestrator;
import dev.ferry.migration.bootstrap.Plan;
import dev.ferry.migration.bootstrap.Plugins;
import dev.ferry.migration.bootstrap.TrackedMachine;
import dev.ferry.migration.bootstrap.UsageException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Collections;
import java.util.EnumSet;
import java.util.List;
import java.time.Duration;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.locks.LockSupport;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.abort;

/**
 * The conformance kit for dirty trackers: extend it from a test of your plugin and name your
 * provider.
 *
 * <pre>{@code
 * class MyTrackerConformanceTest extends DirtyTrackerConformance {
 *     @Override
 *     protected DirtyTrackerProvider provider() {
 *         return new MyTrackerProvider();
 *     }
 * }
 * }</pre>
 *
 * <p>Each test builds a real guest (KVM or the software accelerator, whichever Ferry would choose
 * for your tracker, or {@link #accelerator()}), registers your tracker as Ferry would, runs a
 * workload and audits every sync against a copy of guest RAM ({@link TrackerAudit}): a page
 * whose content changed and that your tracker did not report is a page a migration would lose,
 * and fails the test with the pages and the sync. The kit checks that
 * <ul>
 *   <li>every written page is reported, for sequential, random and hot/cold writers;</li>
 *   <li>writers that keep writing while syncs run lose nothing (vCPUs, and host threads writing
 *       guest RAM if your tracker {@linkplain #sees() sees them});</li>
 *   <li>logging stopped and started again, and a sync with nothing written (which must report
 *       nothing), behave;</li>
 *   <li>RAM sections split and merged, and a RAM region added and removed, while tracking lose
 *       nothing;</li>
 *   <li>a live migration with your tracker alone ends with the destination's RAM equal to the
 *       source's (with a vhost device writing by DMA, its log off, if your tracker sees host
 *       writes);</li>
 *   <li>beside each tracker of {@link #combinedWith()} that works here, audited on one guest and
 *       migrated together, nothing is lost.</li>
 * </ul>
 * After the class it prints, per check, the pages written and reported, the false-positive rate
 * (reported pages whose content had not changed: harmless, sent twice) and the sync cost.
 *
 * <p>Where your tracker is unavailable ({@link DirtyTrackerProvider#probe()}) the tests are
 * skipped with its reason; with {@code FERRY_REQUIRE_KVM=1} a tracker that needs KVM fails
 * instead. Randomness is seeded: {@code -Dferry.test.seed=N} replays a run, and every failure
 * names its seed.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
public abstract class DirtyTrackerConformance {

    /** Where writes to guest RAM come from. */
    public enum WriteSource {
        /** The guest's vCPUs, through the accelerator. */
        GUEST,
        /**
         * Host threads writing guest RAM through {@link dev.ferry.api.RamBlock#host()}, as a vhost
         * backend's DMA does: only trackers that watch host memory itself see these.
         */
        HOST
    }

    private static final long MIB = 1L << 20;
    private static final long SEED = Long.getLong("ferry.test.seed", 0xC0FFEEL);

    private final List<String> figures = Collections.synchronizedList(new ArrayList<>());
    /** The tracker under test, and Ferry's accelerators, devices and other trackers (for combinations). */
    private Plugins plugins;
    private Bootstrap bootstrap;
    private Plan plan;

    /** @return the provider under test; called once per test class */
    protected abstract DirtyTrackerProvider provider();

    /** @return the options to give the tracker; none by default */
    protected Map<String, String> options() {
        return Map.of();
    }

    /**
     * @return the writers whose writes the tracker reports; the guest's by default. A tracker
     *         that watches host memory (userfaultfd, page tables) adds {@link WriteSource#HOST}.
     */
    protected Set<WriteSource> sees() {
        return EnumSet.of(WriteSource.GUEST);
    }

    /**
     * @return trackers to run beside this one, by name; each that is available here and works
     *         with the chosen accelerator gets a check: audited together on one guest (no page
     *         missed by both, and what each reported alone), and a live migration with both that
     *         ends verified. None by default.
     */
    protected List<String> combinedWith() {
        return List.of();
    }

    /** @return the accelerator to run on; {@code auto} (the default) lets Ferry choose */
    protected String accelerator() {
        return Bootstrap.AUTO;
    }

    /** @return the guest's RAM in bytes: small, since the kit keeps a copy of it */
    protected long guestMemory() {
        return 32 * MIB;
    }

    @BeforeAll
    final void choose() {
        DirtyTrackerProvider provider = provider();
        Availability a;
        try {
            a = provider.probe();
        } catch (RuntimeException e) {
            throw new AssertionError("probe() must not throw; it threw " + e, e);
        }
        if (!a.available()) {
            skipOrFail(provider, "tracker " + provider.name() + " is not available here: " + a.reason());
        }
        Plugins found = Plugins.discover(getClass().getClassLoader());
        List<DirtyTrackerProvider> trackers = new ArrayList<>(List.of(provider));
        found.trackers().stream().filter(t -> !t.name().equals(provider.name())).forEach(trackers::add);
        plugins = new Plugins(trackers, found.accelerators(), found.devices(), List.of());
        bootstrap = Bootstrap.create(plugins);
        try {
            plan = bootstrap.plan(accelerator(), provider.name(), options());
        } catch (UsageException e) {
            skipOrFail(provider, e.getMessage());
        }
    }

    private void skipOrFail(DirtyTrackerProvider provider, String why) {
        AcceleratorRequirements needs;
        try {
            needs = provider.requirements(Options.of(options()));
        } catch (IllegalArgumentException e) {
            throw new AssertionError("the kit's options are refused: " + e.getMessage(), e);
        }
        if ("1".equals(System.getenv("FERRY_REQUIRE_KVM")) && needs.accepts("kvm") && !needs.accepts("soft")) {
            fail("FERRY_REQUIRE_KVM=1, but " + why);
        }
        abort("skipped: " + why);
    }

    @AfterAll
    final void printFigures() {
        if (plan == null || figures.isEmpty()) {
            return;
        }
        StringBuilder sb = new StringBuilder();
        sb.append(String.format("conformance of tracker %s%s on %s (%d MiB guest, seed %d):%n",
                plan.trackerNames(), options().isEmpty() ? "" : " " + new java.util.TreeMap<>(options()),
                plan.accelerator().name(), guestMemory() / MIB, SEED));
        synchronized (figures) {
            figures.forEach(f -> sb.append("  ").append(f).append(System.lineSeparator()));
        }
        System.out.print(sb);
    }

    // ---- the checks

    @ParameterizedTest(name = "{0} writer")
    @EnumSource(value = Pattern.class, names = {"SEQUENTIAL", "RANDOM", "HOTCOLD"})
    void reportsEveryWrittenPage(Pattern pattern) {
        try (TrackedMachine tm = build(pattern)) {
            Machine m = tm.machine();
            m.start();
            awaitWrites(m, 256);
                        try (TrackerAudit audit = TrackerAudit.start(tm.machine(), tm.trackers())) {
                exactSyncs(m, audit, 8, pattern + " writer");
                m.pause();
                check(audit.sync(true), pattern + " writer, last sync");
                record("every written page, " + pattern.name().toLowerCase() + " writer", audit.totals(), true);
            }
        }
    }

    @Test
    void losesNothingWhileWritersRunDuringSyncs() {
        try (TrackedMachine tm = build(Pattern.RANDOM)) {
            Machine m = tm.machine();
            m.start();
            awaitWrites(m, 256);
                        try (TrackerAudit audit = TrackerAudit.start(tm.machine(), tm.trackers());
                 HostWriters host = sees().contains(WriteSource.HOST) ? new HostWriters(m, 2) : null) {
                for (int i = 0; i < 40; i++) {
                    audit.sync(false);
                    LockSupport.parkNanos(2_000_000L);
                }
                if (host != null) {
                    host.stop();
                }
                m.pause();
                check(audit.sync(true), "writers running during 40 syncs"
                        + (host != null ? ", " + host.writes() + " of them by host threads" : ""));
                record("writers running during syncs" + (host != null ? " (vCPUs and host threads)" : ""),
                        audit.totals(), false);
            }
        }
    }

    @Test
    void stopsStartsAndResyncs() {
        try (TrackedMachine tm = build(Pattern.HOTCOLD)) {
            Machine m = tm.machine();
            m.start();
            for (int round = 1; round <= 2; round++) {
                awaitWrites(m, 256);
                                try (TrackerAudit audit = TrackerAudit.start(tm.machine(), tm.trackers())) {
                    exactSyncs(m, audit, 3, "logging round " + round);
                    m.pause();
                    check(audit.sync(true), "logging round " + round + ", guest paused");
                    for (int again = 1; again <= 2; again++) {
                        SyncReport quiet = audit.sync(true);
                        assertEquals(0, quiet.written(), "nothing may write while the guest is paused");
                        assertEquals(0L, quiet.reported().getFirst(), () -> "sync " + quiet.index() + " of round "
                                + " with nothing written since the previous one reported " + quiet.reported().getFirst()
                                + " pages: a tracker that reports what it reported before re-sends pages forever"
                                + seed());
                    }
                    record("logging round " + round + " (and 2 syncs with nothing written)", audit.totals(), true);
                }
                m.resume(); // writes with logging off: nobody has to report them
            }
        }
    }

    @Test
    void followsRegionsAddedAndRemovedWhileTracking() {
        try (TrackedMachine tm = build(Pattern.SEQUENTIAL)) {
            Machine m = tm.machine();
            MemoryRegion root = m.systemMemory().root();
            Workload w = m.config().workload();
            m.start();
                        try (TrackerAudit audit = TrackerAudit.start(tm.machine(), tm.trackers())) {
                // 1. Split the RAM section under written, unsynced pages: an I/O window mapped
                //    over the middle of the working set takes its place, then goes away.
                awaitWrites(m, 512);
                m.pause();
                long size = w.workingSetSize(m.config().ramSize());
                long windowAt = (w.workingSetOffset() + size / 2) & -(2 * MIB);
                MemoryRegion window = m.memory().ioRegion("testkit.window", MIB, new NoIo());
                root.addSubregionOverlap(windowAt, window, 1);
                check(audit.sync(true), "RAM section split by a window mapped over it");
                root.removeSubregion(window);
                m.resume();
                awaitWrites(m, 512);
                m.pause();
                check(audit.sync(true), "RAM section whole again after the window went away");

                // 2. A RAM region added while tracking, written, then removed before a sync.
                MemfdRamBlock extra = m.memory().allocateRam("testkit.extra", 2 * MIB);
                MemoryRegion region = m.memory().ramRegion("testkit.extra", extra);
                root.addSubregion(m.assignBar(2 * MIB), region);
                check(audit.sync(true), "RAM region added while tracking");
                boolean host = sees().contains(WriteSource.HOST);
                if (host) {
                    writePages(extra, 0, 64, 1);
                    SyncReport r = check(audit.sync(true), "host writes to a RAM region added while tracking");
                    assertTrue(r.written() >= 64, "the host writes changed " + r.written() + " pages, expected 64");
                    writePages(extra, 64, 64, 2);
                }
                root.removeSubregion(region);
                check(audit.sync(true), host ? "host writes to a RAM region removed before the sync" : "RAM region removed");
                m.resume();
                awaitWrites(m, 512);
                m.pause();
                check(audit.sync(true), "guest writes after the regions changed");
                record("RAM section split and merged, RAM region added and removed", audit.totals(), true);
            }
        }
    }

    /**
     * The end-to-end check: a live migration to a destination in this process, over loopback TCP,
     * with this tracker alone, must end with the destination's RAM equal to the source's
     * (digests compared after the source stopped). A tracker that sees host writes migrates a
     * guest with a vhost device writing by DMA and its vhost log off, so that only the tracker
     * can report those pages.
     */
    @Test
    void aMigrationWithThisTrackerAloneEndsVerified() throws Exception {
        boolean dma = sees().contains(WriteSource.HOST) && plugins.devices().stream()
                .anyMatch(d -> d.name().equals("vhost-net") && d.probe().available());
        MigrationStats stats = migrate(provider().name(), dma);
        figures.add(String.format("%-62s %d iterations, %d dirty syncs, %.1f MiB sent, downtime %d ms, verified",
                "migration with this tracker alone" + (dma ? " (vhost-net DMA, its log off):" : ":"),
                stats.iterations(), stats.dirtySyncCount(), stats.transferred() / 1048576.0, stats.downtimeMs()));
    }

    /**
     * Migrates a running guest with {@code trackers} to a destination in this process and
     * checks it completed verified; with {@code dma}, a vhost-net device writes guest RAM by DMA
     * with its vhost log off, so only the trackers can report those pages.
     */
    private MigrationStats migrate(String trackers, boolean dma) throws Exception {
        Workload workload = new Workload(Pattern.RANDOM, 0, 0, 20, Workload.PAGE_SIZE, 0.1, 0.9, SEED);
        MigrationSettings settings = new MigrationSettings(plan.accelerator().name(), trackers, options(),
                new MachineConfig(guestMemory(), 2, workload, Map.of(), false),
                dma ? List.of("vhost-net:rate=20,log=off") : List.of(),
                MigrationParameters.defaults().withTimeout(Duration.ofSeconds(120)), Optional.empty(), guestMemory(),
                false, Incoming.DeviceLoad.BATCHED);
        Orchestrator o = Orchestrator.create(plugins, settings);
        try (MigrationTarget.Session session = o.connect(); TrackedMachine source = o.buildSource()) {
            source.machine().start();
            awaitWrites(source.machine(), 256);
            LoopbackMigration.Outcome outcome = o.migrate(session, source, s -> {
            });
            outcome.destination().ifPresent(d -> d.machine().close());
            MigrationStats stats = outcome.stats();
            assertEquals(MigrationStatus.COMPLETED, stats.status(), () -> "the migration with " + trackers
                    + " did not complete: " + stats.error()
                    + outcome.destinationError().map(e -> "; destination: " + e).orElse("") + seed());
            assertTrue(outcome.destination().orElseThrow().verified(), "the destination's RAM differs from the source's"
                    + seed());
            return stats;
        }
    }

    @TestFactory
    Stream<DynamicTest> combinations() {
        List<DynamicTest> tests = new ArrayList<>();
        for (String partner : combinedWith()) {
            String trackers = provider().name() + "," + partner;
            Plan pair;
            try {
                pair = bootstrap.plan(plan.accelerator().name(), trackers, options());
            } catch (UsageException e) {
                figures.add(String.format("%-62s %s", "not combined with " + partner + ":",
                        e.getMessage().split("; available here")[0]));
                continue;
            }
            tests.add(DynamicTest.dynamicTest("with " + partner, () -> combined(pair)));
        }
        return tests.stream();
    }

    private void combined(Plan pair) throws Exception {
        Workload workload = new Workload(Pattern.RANDOM, 0, 0, 0, 64, 0.1, 0.9, SEED);
        try (TrackedMachine tm = bootstrap.build(pair, new MachineConfig(guestMemory(), 2, workload, Map.of(), false))) {
            Machine m = tm.machine();
            m.start();
            awaitWrites(m, 256);
                        try (TrackerAudit audit = TrackerAudit.start(tm.machine(), tm.trackers())) {
                exactSyncs(m, audit, 6, pair.trackerNames() + " together");
                AuditTotals t = audit.totals();
                assertTrue(t.written() > 0, "nothing was written, so nothing was checked");
                StringBuilder sb = new StringBuilder();
                for (int i = 0; i < t.trackers().size(); i++) {
                    sb.append(String.format("%s%s %d (%d alone)", i == 0 ? "" : ", ", t.trackers().get(i),
                            t.reported().get(i), t.reportedOnlyBy().get(i)));
                }
                figures.add(String.format("%-62s %3d syncs, %7d pages written; reported: %s; 0 missed",
                        "audited together with " + pair.trackers().get(1).name() + ":", t.syncs(), t.written(), sb));
            }
        }
        MigrationStats stats = migrate(pair.trackerNames(), false);
        figures.add(String.format("%-62s %d iterations, %.1f MiB sent, downtime %d ms, verified",
                "migration together with " + pair.trackers().get(1).name() + ":", stats.iterations(),
                stats.transferred() / 1048576.0, stats.downtimeMs()));
    }

    // ---- the machinery

    private TrackedMachine build(Pattern pattern) {
        Workload workload = new Workload(pattern, 0, 0, 0, 64, 0.1, 0.9, SEED ^ pattern.ordinal());
        try {
            return bootstrap.build(plan, new MachineConfig(guestMemory(), 2, workload, Map.of(), false));
        } catch (UsageException e) {
            throw new AssertionError("the kit's guest was refused: " + e.getMessage(), e);
        }
    }

    /** {@code rounds} times: lets the guest write, then syncs exactly with it paused, and checks. */
    private void exactSyncs(Machine m, TrackerAudit audit, int rounds, String what) {
        for (int i = 0; i < rounds; i++) {
            awaitWrites(m, 128);
            m.pause();
            try {
                check(audit.sync(true), what);
            } finally {
                m.resume();
            }
        }
    }

    private SyncReport check(SyncReport r, String what) {
        if (r.missed() > 0) {
            fail(String.format("%s: %d of %d pages written before sync %d were never reported (first: %s): "
                    + "a migration would lose them%s", what, r.missed(), r.written(), r.index(), r.firstMissed(), seed()));
        }
        return r;
    }

    private void record(String check, AuditTotals t, boolean exactOnly) {
        assertTrue(t.written() > 0 || !exactOnly, check + ": nothing was written, so nothing was checked");
        double fp = t.falsePositiveRate(0);
        figures.add(String.format("%-62s %3d syncs, %7d pages written, %7d reported, false positives %s, "
                        + "sync median %s (max %s), 0 missed", check + ":", t.syncs(), t.written(), t.reported().getFirst(),
                Double.isNaN(fp) ? "-" : String.format("%.1f%%", 100 * fp),
                micros(t.medianSyncNanos().getFirst()), micros(t.maxSyncNanos().getFirst())));
    }

    private static String micros(long nanos) {
        return nanos >= 10_000_000 ? nanos / 1_000_000 + " ms" : nanos / 1000 + " µs";
    }

    private static String seed() {
        return " (seed " + SEED + "; replay with -Dferry.test.seed=" + SEED + ")";
    }

    private static void awaitWrites(Machine m, long pages) {
        long target = m.pagesWritten() + pages;
        long deadline = System.nanoTime() + 60_000_000_000L;
        while (m.pagesWritten() < target) {
            if (m.vcpuFailure().isPresent()) {
                throw new AssertionError("a vCPU failed: " + m.vcpuFailure().get(), m.vcpuFailure().get());
            }
            if (System.nanoTime() > deadline) {
                fail("the guest wrote " + m.pagesWritten() + " pages in 60 s, expected " + target);
            }
            LockSupport.parkNanos(1_000_000L);
        }
    }

    private static void writePages(MemfdRamBlock block, long first, long count, long stamp) {
        MemorySegment host = block.host();
        for (long p = first; p < first + count; p++) {
            host.set(ValueLayout.JAVA_LONG, p * block.pageSize() + 8 * (p % 64), stamp << 32 | p);
        }
    }

    /** An I/O region that reads zero and ignores writes. */
    private static final class NoIo implements IoHandler {
        @Override
        public long read(long offset, int size) {
            return 0;
        }

        @Override
        public void write(long offset, long value, int size) {
        }
    }

    /**
     * Threads that write random pages of the guest's working set through host memory, as a
     * device's DMA does, until stopped.
     */
    private static final class HostWriters implements AutoCloseable {
        private final AtomicBoolean stop = new AtomicBoolean();
        private final List<Thread> threads = new ArrayList<>();
        private final long[] writes;

        HostWriters(Machine m, int count) {
            MemfdRamBlock ram = m.ram();
            Workload w = m.config().workload();
            long first = w.workingSetOffset() / ram.pageSize();
            long pages = w.workingSetSize(m.config().ramSize()) / ram.pageSize();
            writes = new long[count];
            for (int i = 0; i < count; i++) {
                int me = i;
                SplittableRandom rnd = new SplittableRandom(SEED + 17 * i);
                threads.add(Thread.ofPlatform().name("testkit-host-writer-" + i).start(() -> {
                    MemorySegment host = ram.host();
                    while (!stop.get()) {
                        long page = first + rnd.nextLong(pages);
                        host.set(ValueLayout.JAVA_LONG, page * ram.pageSize() + 8 * rnd.nextInt(512), rnd.nextLong());
                        writes[me]++;
                        if ((writes[me] & 63) == 0) {
                            LockSupport.parkNanos(100_000L);
                        }
                    }
                }));
            }
        }

        void stop() {
            stop.set(true);
            for (Thread t : threads) {
                try {
                    t.join();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new AssertionError("interrupted while stopping the host writers", e);
                }
            }
        }

        long writes() {
            long n = 0;
            for (long w : writes) {
                n += w;
            }
            return n;
        }

        @Override
        public void close() {
            stop();
        }
    }
}
