package dev.ferry.migration;

import dev.ferry.api.Device;
import dev.ferry.api.DirtyTrackerProvider;
import dev.ferry.machine.Machine;
import dev.ferry.memory.MemfdRamBlock;
import dev.ferry.migration.bootstrap.DeviceRequest;
import dev.ferry.migration.bootstrap.TrackedMachine;
import dev.ferry.migration.channel.Connection;
import dev.ferry.migration.ram.RamDigest;
import dev.ferry.migration.ram.RamSaver;
import dev.ferry.migration.stream.QemuFormat;
import dev.ferry.migration.stream.StreamWriter;
import dev.ferry.vmstate.VMStateSaver;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ReadableByteChannel;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Consumer;

/**
 * The source side of a precopy live migration (QEMU's migration_thread): setup, then iterations
 * of sending dirty pages and syncing the trackers, then switchover with the guest stopped, then
 * verification by the destination's RAM digests.
 *
 * <p>Stream layout (QEMU's, see {@link QemuFormat}): header; configuration naming the machine;
 * the "ram" section's START (block list), one PART per send burst, END with the rest; a FULL
 * section per vCPU ("cpu") and per device, in QEMU's vmstate format; for a file, the source's RAM
 * digests ({@link IntegritySection}); EOF; the JSON description. Over a transport with a return path the
 * destination says READY once its machine exists (before any page is sent), starts the guest
 * as soon as everything is loaded, and sends its RAM digests; the source compares them with
 * its own, taken from its stopped guest, and answers GO or ABORT after the stream. On ABORT
 * the destination stops and discards its copy, and the source guest, stopped all along, runs
 * again: the source reports completed only when the digests match.
 *
 * <p>On any failure before completion (lost connection, destination error, digest mismatch,
 * cancel, timeout) the source guest keeps running with dirty logging stopped: nothing is lost.
 */
public final class Migration {

    /** A send burst holds the bitmap lock at most this long (QEMU's MAX_WAIT, 50 ms). */
    static final long BURST_NANOS = 50_000_000L;
    /** Rate-limit period (QEMU's BUFFER_DELAY, 100 ms). */
    static final long RATE_PERIOD_NANOS = 100_000_000L;
    /** Dirty rate and auto-converge are judged over periods of at least a second, as in QEMU. */
    static final long SYNC_PERIOD_NANOS = 1_000_000_000L;
    /**
     * Sync periods in a row at the highest throttle with the guest dirtying as fast as the link
     * sends ({@link Convergence#cannotConverge}) before the migration gives up. QEMU iterates
     * until cancelled; a user would rather know in seconds than at the timeout.
     */
    static final int NON_CONVERGING_PERIODS = 5;
    /**
     * How the error of a migration that failed after GO begins: the source keeps its guest
     * stopped, since it cannot know whether the destination runs it.
     */
    public static final String IN_DOUBT = "the destination was told to run the guest, then: ";
    private static final double MIB = 1 << 20;
    private static final int RAM_SECTION_ID = 0;
    private static final int FIRST_DEVICE_SECTION_ID = 1;

    private final TrackedMachine source;
    private final Connection connection;
    private final MigrationParameters params;
    private final RamSaver ram;
    private final ScheduledExecutorService watchdog;

    private volatile MigrationStatus status = MigrationStatus.SETUP;
    private volatile String error = "";
    private volatile boolean cancelRequested;
    private volatile boolean timedOut;
    // Set once GO is on its way: from then on the guest belongs to the destination, and the
    // source must never run it again, whatever happens to the connection.
    private volatile boolean goSent;

    // Figures; written by the migration thread, read by anyone through stats().
    private volatile long startNanos;
    private volatile long endNanos;
    private volatile long setupNanos;
    private volatile long downtimeNanos;
    private volatile long verifyNanos;
    private volatile long expectedDowntimeNanos;
    /** The highest auto-converge throttle set: what stats report once the migration has ended. */
    private volatile int peakThrottle;
    private volatile long transferred;
    private volatile long syncCount;
    private volatile long iterations;
    private volatile long dirtyPagesRate;
    private volatile long pagesPerSecond;
    private volatile double mbps;
    /** When iterating began (setup over), and the pages dirtied since: the figures of a migration shorter than a sync period. */
    private volatile long activeStartNanos;
    private volatile long dirtiedSinceActive;
    /** Whether a whole sync period has been measured; until then the figures are taken since activeStartNanos. */
    private volatile boolean periodMeasured;

    /**
     * @param source     the running machine and its trackers
     * @param connection where the stream goes
     * @param params     tunables
     */
    public Migration(TrackedMachine source, Connection connection, MigrationParameters params) {
        this.source = source;
        this.connection = connection;
        this.params = params;
        Machine m = source.machine();
        this.ram = new RamSaver(m.memory(), m.systemMemory(), params.clearBitmapShift());
        this.watchdog = Executors.newSingleThreadScheduledExecutor(r -> Thread.ofPlatform()
                .name("migration-watchdog").daemon().unstarted(r));
    }

    /** Asks the migration to stop; the guest stays on the source. */
    public void cancel() {
        if (goSent) {
            return; // too late: the destination runs the guest
        }
        cancelRequested = true;
        if (!status.finished()) {
            // Closing the connection unblocks a send or a wait on a stalled destination; the
            // migration thread then sees the cancel and recovers.
            closeQuietly();
        }
    }

    /**
     * The guest says a range of RAM is free (QEMU's free-page hint); its pages are not sent
     * unless written again. Safe from any thread.
     *
     * @return dirty pages dropped
     */
    public long hintFree(MemfdRamBlock block, long offset, long length) {
        return ram.hintFree(block, offset, length);
    }

    /** @return the RAM saver, for its counters */
    public RamSaver ram() {
        return ram;
    }

    /** @return the figures now */
    public MigrationStats stats() {
        long now = endNanos != 0 ? endNanos : System.nanoTime();
        long pages = ram.remainingPages();
        return new MigrationStats(status, error, startNanos == 0 ? 0 : (now - startNanos) / 1_000_000,
                setupNanos / 1_000_000, downtimeNanos / 1_000_000, verifyNanos / 1_000_000,
                expectedDowntimeNanos == Long.MAX_VALUE ? -1 : expectedDowntimeNanos / 1_000_000, transferred,
                pages * 4096, ram.totalBytes(), ram.zeroPages(), ram.normalPages(), syncCount, dirtyPagesRate,
                pagesPerSecond, mbps, iterations, endNanos != 0 ? peakThrottle : source.machine().throttle(),
                source.plan().trackers().stream().map(DirtyTrackerProvider::name).toList());
    }

    /**
     * Runs the migration to its end.
     *
     * @param progress told the figures about every 100 ms, and after every dirty-log sync
     * @return the final figures; {@link MigrationStats#status()} says how it ended
     */
    public MigrationStats run(Consumer<MigrationStats> progress) {
        startNanos = System.nanoTime();
        Machine machine = source.machine();
        boolean logging = false;
        boolean paused = false;
        var timeout = watchdog.schedule(() -> {
            timedOut = true;
            closeQuietly();
        }, params.timeout().toNanos(), TimeUnit.NANOSECONDS);
        try {
            StreamWriter out = new StreamWriter(connection.streamOut());
            machine.start();
            machine.memory().globalDirtyLogStart();
            logging = true;
            writeHeader(out);
            out.flush();
            awaitDestinationReady();
            sectionHeader(out, QemuFormat.SECTION_START, RAM_SECTION_ID, QemuFormat.RAM_SECTION, 0, QemuFormat.RAM_VERSION);
            ram.setup(out);
            footer(out, RAM_SECTION_ID);
            out.flush();
            // As ram_init_bitmaps: sync once right after logging starts (this also drops what a
            // tracker reports as initially dirty; the bitmap is all ones anyway).
            long syncStart = System.nanoTime();
            ram.sync(false);
            syncCount++;
            long firstSyncNanos = System.nanoTime() - syncStart;
            setupNanos = System.nanoTime() - startNanos;
            activeStartNanos = System.nanoTime();
            status = MigrationStatus.ACTIVE;
            iterate(out, machine, firstSyncNanos, progress);

            status = MigrationStatus.DEVICE;
            long pauseStart = System.nanoTime();
            machine.pause();
            paused = true;
            ram.sync(true);
            syncCount++;
            complete(out, machine);
            transferred = out.flushed();
            // The guest is stopped: its RAM is final. It is digested once the destination has
            // started the guest, so that the digest does not take cores from the switchover.
            verify(pauseStart);
            status = MigrationStatus.COMPLETED;
            machine.memory().globalDirtyLogStop();
            machine.setThrottle(0);
            return finish(progress);
        } catch (Exception | Error e) {
            status = cancelRequested ? MigrationStatus.CANCELLED : MigrationStatus.FAILED;
            error = describe(e);
            closeQuietly();
            // Nothing of the guest is lost: it goes on running here.
            if (logging) {
                try {
                    machine.memory().globalDirtyLogStop();
                } catch (RuntimeException stopFailure) {
                    error += "; stopping dirty logging also failed: " + stopFailure.getMessage();
                }
            }
            machine.setThrottle(0);
            if (goSent) {
                error = IN_DOUBT + error
                        + "; the source keeps its stopped copy, check the destination before resuming it";
            } else if (paused) {
                machine.resume();
            }
            return finish(progress);
        } finally {
            timeout.cancel(false);
            watchdog.shutdownNow();
        }
    }

    private MigrationStats finish(Consumer<MigrationStats> progress) {
        endNanos = System.nanoTime();
        ratesSinceActive(endNanos);
        MigrationStats s = stats();
        progress.accept(s);
        return s;
    }

    private String describe(Throwable e) {
        if (cancelRequested) {
            return "cancelled";
        }
        if (timedOut) {
            Duration t = params.timeout();
            MigrationStats now = stats();
            return "timed out after " + (t.toMillisPart() == 0 ? t.toSeconds() + " s" : t.toMillis() + " ms") + (periodMeasured
                    ? String.format(" without converging: the guest dirtied %.0f MiB/s against %.0f MiB/s sent in the "
                    + "last second, throttle %d%%", now.dirtyBytesPerSecond() / MIB, now.sentBytesPerSecond() / MIB,
                    peakThrottle)
                    : "");
        }
        String m = e.getMessage();
        return m == null || m.isBlank() ? e.getClass().getSimpleName() : m;
    }

    /**
     * Before a whole sync period has passed, the figures are those since iterating began (a
     * migration shorter than a period would otherwise report zeros); after, the period's stand.
     */
    private void ratesSinceActive(long now) {
        if (periodMeasured || activeStartNanos == 0) {
            return;
        }
        long nanos = Math.max(1, now - activeStartNanos);
        dirtyPagesRate = dirtiedSinceActive * 1_000_000_000L / nanos;
        pagesPerSecond = (ram.normalPages() + ram.zeroPages()) * 1_000_000_000L / nanos;
        mbps = transferred * 8e3 / nanos;
    }

    private void closeQuietly() {
        try {
            connection.close();
        } catch (IOException ignored) {
            // Closing is how we cut a stuck peer off; a failure to close changes nothing.
        }
    }

    /** Waits until the destination has built its machine (where there is a return path). */
    private void awaitDestinationReady() throws MigrationException {
        Optional<ReadableByteChannel> rp = connection.returnIn();
        if (rp.isEmpty()) {
            return;
        }
        ReturnPath.Message msg;
        try {
            msg = ReturnPath.receive(rp.get());
        } catch (IOException e) {
            throw new MigrationException("the destination went away during setup: " + e.getMessage(), e);
        }
        if (msg.type() == ReturnPath.ERROR) {
            throw new MigrationException("the destination refused the machine: " + msg.text());
        }
        if (msg.type() != ReturnPath.READY) {
            throw new MigrationException("unexpected return-path message 0x" + Integer.toHexString(msg.type())
                    + " during setup");
        }
    }

    private void writeHeader(StreamWriter out) throws IOException {
        out.put32(QemuFormat.FILE_MAGIC);
        out.put32(QemuFormat.FILE_VERSION);
        Machine machine = source.machine();
        List<MachineDescription.Device> devices = new ArrayList<>();
        for (DeviceRequest r : source.devices()) {
            Map<String, String> options = new LinkedHashMap<>();
            for (String k : r.options().names()) {
                options.put(k, r.options().get(k).orElseThrow());
            }
            devices.add(new MachineDescription.Device(r.provider().name(), r.id(), options));
        }
        byte[] name = new MachineDescription(machine.accelerator().name(), machine.config(), devices).encode()
                .getBytes(StandardCharsets.US_ASCII);
        out.put8(QemuFormat.CONFIGURATION);
        out.put32(name.length);
        out.put(name);
    }

    private static void sectionHeader(StreamWriter out, int type, int id, String idstr, int instance, int version)
            throws IOException {
        out.put8(type);
        out.put32(id);
        out.putString8(idstr);
        out.put32(instance);
        out.put32(version);
    }

    private static void footer(StreamWriter out, int id) throws IOException {
        out.put8(QemuFormat.SECTION_FOOTER);
        out.put32(id);
    }

    /**
     * What switchover costs whatever is left to send: the final sync, vCPU state and a round
     * trip, a few milliseconds. (The source's RAM digest is not in it: the destination runs the
     * guest before the source has checked the digests, and stops it again on a mismatch.)
     */
    private static long switchoverOverheadNanos(long lastSyncNanos) {
        return 2 * lastSyncNanos + 5_000_000L;
    }

    /**
     * @param firstSyncNanos what the setup sync took; the switchover cost follows the latest sync
     *                       from then on, since the first one (every page initially dirty, code not
     *                       yet compiled) can cost many times a later one: on an emulated host its
     *                       ~220 ms alone put the estimate over the limit with nothing left to send
     */
    private void iterate(StreamWriter out, Machine machine, long firstSyncNanos, Consumer<MigrationStats> progress)
            throws IOException, MigrationException {
        long switchoverCost = switchoverOverheadNanos(firstSyncNanos);
        long periodStart = System.nanoTime();
        long periodBytes = out.position();
        long periodPagesSent = ram.normalPages() + ram.zeroPages();
        long periodDirtied = 0;
        int highDirtyPeriods = 0;
        int nonConverging = 0;
        long lastSyncNanos = System.nanoTime();
        RateLimit rateLimit = new RateLimit(params.maxBandwidth(), out.position());
        double bandwidth = 0;
        double lastBurstRate = 0;
        long lastProgress = 0;
        // Once the estimate fits the limit, passes may go on with the guest running while each
        // one is expected to halve the downtime (Convergence.anotherPassPays). Such a pass ends
        // only when the bitmap is drained, and each must have lowered the estimate to 3/4 of
        // the one before, measured: a guest dirtying faster than its rate said cannot keep
        // precopy going.
        long lastFitNanos = Long.MAX_VALUE;
        boolean finishingPass = false;
        while (true) {
            checkAlive(machine);
            long burstStart = System.nanoTime();
            long before = out.position();
            out.put8(QemuFormat.SECTION_PART);
            out.put32(RAM_SECTION_ID);
            long budget = rateLimit.allowance(out.position());
            boolean drained = ram.sendBurst(out, burstStart + BURST_NANOS, () -> budget);
            footer(out, RAM_SECTION_ID);
            out.flush();
            long burstEnd = System.nanoTime();
            transferred = out.flushed();
            long sent = out.position() - before;
            if (sent > 64 << 10) {
                // Bandwidth while sending, smoothed; idle time between bursts does not count.
                lastBurstRate = sent * 1e9 / Math.max(1, burstEnd - burstStart);
                bandwidth = bandwidth == 0 ? lastBurstRate : 0.7 * bandwidth + 0.3 * lastBurstRate;
                if (params.maxBandwidth() > 0) {
                    bandwidth = Math.min(bandwidth, params.maxBandwidth());
                }
            }
            // The estimate trusts the slower of the smoothed and the latest rate: a host that has
            // just slowed down sends the final pass at the latest rate, not the average.
            double switchoverBandwidth = Math.min(bandwidth, lastBurstRate);
            rateLimit.afterBurst(out.position());
            long remaining = ram.remainingPages() * 4096;
            expectedDowntimeNanos = Convergence.expectedDowntimeNanos(remaining, switchoverBandwidth, switchoverCost);
            // Aim at two thirds of the limit: the estimate rests on the bandwidth measured while
            // iterating, and the final send (destination loading and starting the guest on the
            // same cores, code paths not yet compiled on a first run) was measured up to ~1.4x
            // slower on a 2-core host, and once ~1.8x while the host was loaded from outside.
            long limit = params.downtimeLimit().toNanos() * 2 / 3;
            boolean passEnds = drained || !finishingPass && Convergence.canSwitchover(expectedDowntimeNanos, limit);
            // A pass over a slow link can take minutes. QEMU syncs only when one ends, so its
            // dirty rate and auto-converge react once per pass (a 512 MiB guest at 20 MiB/s:
            // a throttle step every 50 s, 99% after 7 minutes). Syncing at least once a second
            // measures the guest as it re-dirties pages already sent, and throttles it in seconds.
            if (passEnds || burstEnd - lastSyncNanos >= SYNC_PERIOD_NANOS) {
                if (passEnds) {
                    // An iteration is what is sent between two syncs that end passes.
                    iterations++;
                }
                long syncStart = System.nanoTime();
                long sinceLastSync = Math.max(1, syncStart - lastSyncNanos);
                lastSyncNanos = syncStart;
                long dirtied = ram.sync(false);
                syncCount++;
                switchoverCost = switchoverOverheadNanos(System.nanoTime() - syncStart);
                periodDirtied += dirtied;
                dirtiedSinceActive += dirtied;
                remaining = ram.remainingPages() * 4096;
                expectedDowntimeNanos = Convergence.expectedDowntimeNanos(remaining, switchoverBandwidth, switchoverCost);
                long now = System.nanoTime();
                if (now - periodStart >= SYNC_PERIOD_NANOS) {
                    long seconds = Math.max(1, now - periodStart);
                    long sentPages = ram.normalPages() + ram.zeroPages() - periodPagesSent;
                    long sentBytes = out.position() - periodBytes;
                    dirtyPagesRate = periodDirtied * 1_000_000_000L / seconds;
                    pagesPerSecond = sentPages * 1_000_000_000L / seconds;
                    mbps = sentBytes * 8e3 / seconds;
                    periodMeasured = true;
                    if (params.autoConverge() && syncCount > 2) {
                        if (Convergence.cannotConverge(machine.throttle(), params.throttleMax(), periodDirtied,
                                sentPages)) {
                            if (++nonConverging >= NON_CONVERGING_PERIODS) {
                                MigrationStats rates = stats();
                                throw new MigrationException(String.format("did not converge: at the highest throttle "
                                        + "(%d%%) the guest still dirtied %.0f MiB/s, as fast as or faster than the "
                                        + "%.0f MiB/s sent, in %d periods of a second in a row; raise --max-bandwidth "
                                        + "or --downtime-limit, or lower the guest's write rate", machine.throttle(),
                                        rates.dirtyBytesPerSecond() / MIB, rates.sentBytesPerSecond() / MIB,
                                        nonConverging));
                            }
                        } else {
                            nonConverging = 0;
                        }
                        if (Convergence.dirtyRateTooHigh(periodDirtied * 4096, sentBytes, params.throttleTrigger())) {
                            if (++highDirtyPeriods >= 2) {
                                highDirtyPeriods = 0;
                                int throttle = Convergence.nextThrottle(machine.throttle(),
                                        params.throttleInitial(), params.throttleIncrement(), params.throttleMax());
                                machine.setThrottle(throttle);
                                peakThrottle = Math.max(peakThrottle, throttle);
                            }
                        }
                    }
                    periodStart = now;
                    periodBytes = out.position();
                    periodPagesSent = ram.normalPages() + ram.zeroPages();
                    periodDirtied = 0;
                }
                // Reported after every sync too, so that a timeline places syncs and the ends of
                // passes where they happened; the last report comes before the guest is stopped.
                lastProgress = report(progress);
                // With nothing left to send the estimate is the fixed cost alone, bandwidth or not
                // (an idle guest of zero pages may never send enough for a bandwidth figure); it
                // must still fit the limit.
                if (Convergence.canSwitchover(expectedDowntimeNanos, limit)) {
                    double dirtyBytesPerSecond = dirtied * 4096 * 1e9 / sinceLastSync;
                    if (expectedDowntimeNanos > lastFitNanos / 4 * 3 || !Convergence.anotherPassPays(remaining,
                            switchoverBandwidth, dirtyBytesPerSecond, switchoverCost)) {
                        return;
                    }
                    lastFitNanos = expectedDowntimeNanos;
                    finishingPass = true;
                } else {
                    finishingPass = false;
                }
            }
            if (System.nanoTime() - lastProgress >= RATE_PERIOD_NANOS) {
                lastProgress = report(progress);
            }
        }
    }

    /** Tells {@code progress} the figures now; @return when */
    private long report(Consumer<MigrationStats> progress) {
        long now = System.nanoTime();
        ratesSinceActive(now);
        progress.accept(stats());
        return now;
    }

    /**
     * max-bandwidth as QEMU's migration_rate_limit applies it: each {@link #RATE_PERIOD_NANOS}
     * period may carry {@code maxBandwidth / 10} bytes; once they are spent, the sender waits for
     * the next period.
     */
    private static final class RateLimit {
        private final long perPeriod;
        private long periodStart = System.nanoTime();
        private long periodStartBytes;

        RateLimit(long maxBandwidth, long position) {
            this.perPeriod = maxBandwidth == 0 ? 0 : maxBandwidth * RATE_PERIOD_NANOS / 1_000_000_000L;
            this.periodStartBytes = position;
        }

        /** @return bytes the stream may still carry in this period */
        long allowance(long position) {
            return perPeriod == 0 ? Long.MAX_VALUE : Math.max(0, perPeriod - (position - periodStartBytes));
        }

        /** Waits out the period if its bytes are spent, and starts a new period when one is over. */
        void afterBurst(long position) {
            if (perPeriod == 0) {
                return;
            }
            if (position - periodStartBytes >= perPeriod) {
                long wait = periodStart + RATE_PERIOD_NANOS - System.nanoTime();
                if (wait > 0) {
                    LockSupport.parkNanos(wait);
                }
            }
            if (System.nanoTime() - periodStart >= RATE_PERIOD_NANOS) {
                periodStart = System.nanoTime();
                periodStartBytes = position;
            }
        }
    }

    private void checkAlive(Machine machine) throws MigrationException {
        if (cancelRequested) {
            throw new MigrationException("cancelled");
        }
        if (timedOut) {
            throw new MigrationException("timed out");
        }
        Optional<Throwable> failure = machine.vcpuFailure();
        if (failure.isPresent()) {
            throw new MigrationException("a vCPU of the source stopped: " + failure.get().getMessage(), failure.get());
        }
    }

    /** Sends the rest of RAM with no rate limit (as migration_completion), then vCPU state and the end. */
    private void complete(StreamWriter out, Machine machine) throws IOException, MigrationException {
        out.put8(QemuFormat.SECTION_END);
        out.put32(RAM_SECTION_ID);
        while (!ram.sendBurst(out, Long.MAX_VALUE, () -> Long.MAX_VALUE)) {
            // sendBurst only stops early on its deadline or budget, neither of which applies.
        }
        footer(out, RAM_SECTION_ID);
        // Non-iterable state: one FULL section per vCPU and device (QEMU's vmstate).
        List<String> descriptions = new ArrayList<>();
        int sectionId = FIRST_DEVICE_SECTION_ID;
        for (DeviceSections section : DeviceSections.of(machine)) {
            Device d = section.device();
            VMStateSaver.Saved saved;
            try {
                saved = VMStateSaver.save(d.vmstate(), section.idstr(), section.instance());
            } catch (RuntimeException e) {
                throw new MigrationException("device " + d.id() + ": cannot save its state: " + e.getMessage(), e);
            }
            sectionHeader(out, QemuFormat.SECTION_FULL, sectionId, section.idstr(), section.instance(),
                    d.vmstate().description().version());
            out.put(saved.bytes());
            footer(out, sectionId++);
            descriptions.add(saved.json());
        }
        if (connection.returnIn().isEmpty()) {
            // No return path (a file): nobody confirms the digests now, so the saved guest carries
            // the source's, taken from its stopped RAM, for the restore to check.
            VMStateSaver.Saved saved = VMStateSaver.save(IntegritySection.of(sourceDigests()).vmstate(),
                    IntegritySection.IDSTR, 0);
            sectionHeader(out, QemuFormat.SECTION_FULL, sectionId, IntegritySection.IDSTR, 0,
                    IntegritySection.version());
            out.put(saved.bytes());
            footer(out, sectionId);
            descriptions.add(saved.json());
        }
        out.put8(QemuFormat.EOF);
        byte[] json = VmDescription.json(descriptions);
        out.put8(QemuFormat.VMDESCRIPTION);
        out.put32(json.length);
        out.put(json);
        out.flush();
    }

    private Map<String, Integer> sourceDigests() {
        Map<String, Integer> out = new LinkedHashMap<>();
        for (MemfdRamBlock b : ram.ramBlocks()) {
            out.put(b.name(), RamDigest.of(b).value());
        }
        return out;
    }

    /**
     * Waits for the destination's digests, compares them with the source's, and tells the
     * destination to run the guest (GO) or not (ABORT).
     */
    private void verify(long pauseStart)
            throws IOException, MigrationException {
        Optional<ReadableByteChannel> rp = connection.returnIn();
        if (rp.isEmpty()) {
            // A file has no return path: the saved stream is the result; the guest stays stopped.
            downtimeNanos = System.nanoTime() - pauseStart;
            connection.close();
            return;
        }
        Map<String, Integer> theirs = null;
        while (true) {
            ReturnPath.Message msg;
            try {
                msg = ReturnPath.receive(rp.get());
            } catch (IOException e) {
                throw new MigrationException("lost the destination before it confirmed: " + e.getMessage(), e);
            }
            switch (msg.type()) {
                case ReturnPath.ERROR -> throw new MigrationException("the destination rejected the stream: " + msg.text());
                case ReturnPath.DIGESTS -> {
                    // The destination sends its digests right after it starts the guest.
                    downtimeNanos = System.nanoTime() - pauseStart;
                    theirs = msg.digests();
                    Map<String, Integer> ours = sourceDigests();
                    String mismatch = compare(ours, theirs);
                    goSent = mismatch == null;
                    writeVerdict(mismatch == null ? ReturnPath.GO : ReturnPath.ABORT);
                    if (mismatch != null) {
                        awaitShut(rp.get());
                        throw new MigrationException(mismatch);
                    }
                }
                case ReturnPath.SHUT -> {
                    if (msg.shutStatus() != 0 || theirs == null) {
                        throw new MigrationException("the destination failed to start the guest");
                    }
                    verifyNanos = System.nanoTime() - pauseStart - downtimeNanos;
                    return;
                }
                default -> throw new MigrationException("unknown return-path message 0x" + Integer.toHexString(msg.type()));
            }
        }
    }

    /** After an ABORT: wait until the destination has stopped its copy, so two never run at once. */
    private static void awaitShut(ReadableByteChannel rp) {
        try {
            while (ReturnPath.receive(rp).type() != ReturnPath.SHUT) {
                // Skip anything else the destination says on its way out.
            }
        } catch (IOException gone) {
            // A destination that went away runs nothing either.
        }
    }

    private void writeVerdict(int verdict) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(1).put((byte) verdict).flip();
        while (b.hasRemaining()) {
            connection.streamOut().write(b);
        }
    }

    private static String compare(Map<String, Integer> ours, Map<String, Integer> theirs) {
        if (!ours.keySet().equals(theirs.keySet())) {
            return "RAM digest mismatch: the destination reports blocks " + theirs.keySet() + ", the source has "
                    + ours.keySet();
        }
        for (var e : ours.entrySet()) {
            int t = theirs.get(e.getKey());
            if (t != e.getValue()) {
                return String.format("RAM digest mismatch on block %s (source %08x, destination %08x): "
                        + "pages were lost; the guest stays on the source", e.getKey(), e.getValue(), t);
            }
        }
        return null;
    }
}
