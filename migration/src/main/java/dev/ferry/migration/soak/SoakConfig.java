package dev.ferry.migration.soak;

import dev.ferry.machine.workload.Pattern;

import java.util.List;
import java.util.SplittableRandom;

/**
 * One soak run, drawn from its seed: the same seed gives the same guest, transport and fault
 * (when the fault strikes is a time, so a replay hits the same moment, not the same byte).
 *
 * @param seed          the run's seed, which replays it
 * @param accelerator   accelerator name
 * @param trackers      tracker list, comma-separated
 * @param pattern       what the guest writes
 * @param vcpus         1 to 4
 * @param memoryMiB     guest RAM
 * @param rateMiBps     the guest's dirty rate
 * @param maxBandwidth  bytes per second the stream may use, 0 for no limit
 * @param transport     how the stream goes
 * @param fault         what goes wrong, if anything
 * @param faultAtMillis when the fault strikes, after the migration starts
 */
public record SoakConfig(long seed, String accelerator, String trackers, Pattern pattern, int vcpus, int memoryMiB,
                         int rateMiBps, long maxBandwidth, Transport transport, Fault fault, int faultAtMillis) {

    /** How the stream goes from source to destination. */
    public enum Transport {
        /** A pipe pair in this process. */
        IN_PROCESS,
        /** Loopback TCP. */
        TCP,
        /** A unix socket. */
        UNIX,
        /** Saved to a file, then loaded from it as {@code ferry incoming file:} does. */
        FILE;

        /** @return the word tables use */
        public String word() {
            return name().toLowerCase(java.util.Locale.ROOT).replace('_', '-');
        }
    }

    /** What goes wrong during the run. */
    public enum Fault {
        /** Nothing: the migration must complete, verified. */
        NONE,
        /** The source's end of the connection is closed, as a cut link. */
        CUT,
        /** The destination goes away: its end of the connection is closed (not for a file). */
        KILL_DESTINATION,
        /** The user cancels. */
        CANCEL,
        /** The migration's timeout expires. */
        TIMEOUT;

        /** @return the word tables use */
        public String word() {
            return name().toLowerCase(java.util.Locale.ROOT).replace('_', '-');
        }
    }

    private static final List<Pattern> PATTERNS = List.of(Pattern.SEQUENTIAL, Pattern.RANDOM, Pattern.HOTCOLD,
            Pattern.IDLE);
    private static final int[] MEMORY_MIB = {16, 32, 64};
    private static final int[] RATES_MIBPS = {5, 20, 80, 200};
    // Mostly limited: an unlimited 64 MiB guest moves in a tenth of a second, before most faults strike.
    private static final long[] BANDWIDTHS = {0, 32L << 20, 64L << 20, 128L << 20};

    /**
     * Draws a run.
     *
     * @param seed         the run's seed
     * @param accelerators accelerators to draw from, with the tracker lists each can run
     */
    public static SoakConfig draw(long seed, List<Choice> accelerators) {
        SplittableRandom r = new SplittableRandom(seed);
        Choice accel = accelerators.get(r.nextInt(accelerators.size()));
        String trackers = accel.trackerLists().get(r.nextInt(accel.trackerLists().size()));
        Pattern pattern = PATTERNS.get(r.nextInt(PATTERNS.size()));
        int vcpus = 1 + r.nextInt(4);
        int memory = MEMORY_MIB[r.nextInt(MEMORY_MIB.length)];
        int rate = RATES_MIBPS[r.nextInt(RATES_MIBPS.length)];
        long bandwidth = BANDWIDTHS[r.nextInt(BANDWIDTHS.length)];
        Transport transport = Transport.values()[r.nextInt(Transport.values().length)];
        // Half the runs go wrong somewhere; a file has no destination to kill.
        Fault fault = Fault.NONE;
        if (r.nextBoolean()) {
            List<Fault> faults = transport == Transport.FILE ? List.of(Fault.CUT, Fault.CANCEL, Fault.TIMEOUT)
                    : List.of(Fault.CUT, Fault.KILL_DESTINATION, Fault.CANCEL, Fault.TIMEOUT);
            fault = faults.get(r.nextInt(faults.size()));
        }
        int at = 1 + r.nextInt(300);
        return new SoakConfig(seed, accel.accelerator(), trackers, pattern, vcpus, memory, rate, bandwidth, transport,
                fault, at);
    }

    /**
     * An accelerator a soak may use, and the tracker lists to draw from on it.
     *
     * @param accelerator  its name
     * @param trackerLists comma-separated tracker lists, combinations included
     */
    public record Choice(String accelerator, List<String> trackerLists) {
        public Choice {
            if (trackerLists.isEmpty()) {
                throw new IllegalArgumentException("accelerator " + accelerator + " has no tracker to soak");
            }
            trackerLists = List.copyOf(trackerLists);
        }
    }

    /** @return one line describing the run */
    public String describe() {
        return String.format("%s %s, %s %d vCPU%s %d MiB at %d MiB/s, %s, %s%s", accelerator, trackers,
                pattern.name().toLowerCase(java.util.Locale.ROOT), vcpus, vcpus == 1 ? "" : "s", memoryMiB, rateMiBps,
                maxBandwidth == 0 ? "no bandwidth limit" : (maxBandwidth >> 20) + " MiB/s link", transport.word(),
                fault == Fault.NONE ? "" : ", " + fault.word() + " at " + faultAtMillis + " ms");
    }
}
