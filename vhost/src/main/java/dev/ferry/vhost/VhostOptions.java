package dev.ferry.vhost;

import dev.ferry.api.Options;

import java.util.Set;

/**
 * A vhost device's options, as given on the command line ({@code --vhost net:queues=48,rate=50}).
 *
 * @param queues    net: queue pairs (one vhost dev each); blk: queues (all in one vhost dev)
 * @param rateMiBps bytes the backend writes into guest buffers, in MiB/s for the whole device; 0 for none
 * @param random    buffers are filled in random order, else round robin
 * @param buffers   guest buffer pages per queue the backend writes data into
 * @param queueSize entries of each virtqueue
 * @param backend   kernel-like or user-like backend, which decides the shared log it uses
 * @param log       whether the device logs its writes (off only to show what is lost without)
 * @param logScan   who scans memory sections on a sync
 */
public record VhostOptions(int queues, double rateMiBps, boolean random, int buffers, int queueSize,
                           VhostBackendType backend, boolean log, VhostDev.LogScan logScan) {

    /** The option names both vhost devices understand. */
    public static final Set<String> NAMES = Set.of("queues", "rate", "pattern", "buffers", "queue-size", "backend",
            "log", "log-scan");
    /** Most queues (pairs) per device. */
    public static final int MAX_QUEUES = 256;

    /**
     * @param defaultBackend the device's usual backend (vhost-net: kernel; vhost-user-blk: user)
     * @throws IllegalArgumentException with a one-line message naming the bad option
     */
    public static VhostOptions parse(Options o, VhostBackendType defaultBackend) {
        long queues = o.getLong("queues", 1);
        if (queues < 1 || queues > MAX_QUEUES) {
            throw new IllegalArgumentException("queues must be 1 to " + MAX_QUEUES + ", got " + queues);
        }
        double rate;
        String r = o.get("rate").orElse("10").trim();
        try {
            rate = Double.parseDouble(r);
        } catch (NumberFormatException e) {
            rate = -1;
        }
        if (!(rate >= 0) || Double.isInfinite(rate)) {
            throw new IllegalArgumentException("rate must be a non-negative number of MiB/s, got '" + r + "'");
        }
        String pattern = o.get("pattern").orElse("random").trim();
        if (!pattern.equals("random") && !pattern.equals("sequential")) {
            throw new IllegalArgumentException("pattern must be random or sequential, got '" + pattern + "'");
        }
        long buffers = o.getLong("buffers", 16);
        if (buffers < 1 || buffers > 65536) {
            throw new IllegalArgumentException("buffers must be 1 to 65536 pages per queue, got " + buffers);
        }
        long size = o.getLong("queue-size", 256);
        if (size < 1 || size > 32768 || Long.bitCount(size) != 1) {
            throw new IllegalArgumentException("queue-size must be a power of two up to 32768, got " + size);
        }
        VhostBackendType backend = VhostBackendType.parse(o.get("backend").orElse(defaultBackend.toString()).trim());
        VhostDev.LogScan scan = VhostDev.LogScan.parse(o.get("log-scan").orElse("elected").trim());
        return new VhostOptions((int) queues, rate, pattern.equals("random"), (int) buffers, (int) size, backend,
                o.getBoolean("log", true), scan);
    }

    /** @return guest bytes of one queue's used ring, in whole pages */
    long ringBytes() {
        return Math.ceilDiv(VirtQueue.usedBytes(queueSize), 4096L) * 4096;
    }

    /** @return guest bytes of one data queue's buffers */
    long bufferBytes() {
        return 4096L * buffers;
    }

    /** @return guest bytes for one queue: its used ring, and its buffers if it gets data */
    long queueBytes(boolean data) {
        return ringBytes() + (data ? bufferBytes() : 0);
    }
}
