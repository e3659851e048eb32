package dev.ferry.vhost;

import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicReferenceArray;

/**
 * A machine's vhost logs and memory-section loggers, one of each per backend type: QEMU's
 * {@code vhost_log[]}, {@code vhost_log_shm[]} and {@code vhost_log_devs[]}
 * (hw/virtio/vhost.c), which are static arrays there and one object per machine here (shared
 * through {@link dev.ferry.api.MachineContext#shared}).
 *
 * <h2>Logs</h2>
 * {@link #get} hands out the type's current log if it has the size asked for, counting a
 * reference, or makes a new one that becomes current (vhost_log_get); {@link #put} drops a
 * reference, and the last one syncs the log into RAM before freeing it (vhost_log_put with sync),
 * so no mark is lost when a log is resized or its last dev leaves.
 *
 * <h2>Election</h2>
 * The log is shared, so scanning it for memory sections once per sync is enough; every dev still
 * scans its own used rings. The devs of a type that log are kept in order of {@link #elect};
 * the first is the logger (vhost_dev_should_log). A later dev goes behind the first, so the
 * logger does not change while it logs; when it leaves ({@link #unelect}), the next takes over.
 * The marks stay in the shared log across the hand-over, so none is missed.
 */
public final class VhostBackends {

    private final Map<VhostBackendType, VhostLog> current = new EnumMap<>(VhostBackendType.class);
    private final Map<VhostBackendType, List<VhostDev>> loggers = new EnumMap<>(VhostBackendType.class);
    /** The head of each type's queue, read without the lock on every sync of every dev. */
    private final AtomicReferenceArray<VhostDev> heads = new AtomicReferenceArray<>(VhostBackendType.values().length);

    /**
     * @param words the log size the dev needs
     * @return the type's current log if it is at least that large (QEMU asks for the exact size;
     *         taking a larger one keeps every dev of a type on one log while their tables agree),
     *         or a new current log of that size; with one more reference
     */
    synchronized VhostLog get(VhostBackendType type, long words) {
        VhostLog log = current.get(type);
        if (log == null || log.words() < words) {
            log = VhostLog.allocate(words, type.sharedLog());
            current.put(type, log);
        }
        log.refs++;
        return log;
    }

    /**
     * Drops a reference. The last one runs {@code syncAll} (which takes every mark left in the
     * log into RAM) and frees the log.
     */
    synchronized void put(VhostBackendType type, VhostLog log, Runnable syncAll) {
        if (log.refs <= 0) {
            throw new IllegalStateException(log + " has no reference to drop");
        }
        if (--log.refs > 0) {
            return;
        }
        try {
            syncAll.run();
        } finally {
            if (current.get(type) == log) {
                current.remove(type);
            }
            log.free();
        }
    }

    /** Puts a dev that starts logging in the type's queue of loggers (vhost_dev_elect_mem_logger with add). */
    synchronized void elect(VhostBackendType type, VhostDev dev) {
        List<VhostDev> list = loggers.computeIfAbsent(type, t -> new ArrayList<>());
        if (list.contains(dev)) {
            return;
        }
        // Behind the head, as QEMU does, so the logger stays the same while it logs.
        list.add(list.isEmpty() ? 0 : 1, dev);
        publishHead(type, list);
    }

    private void publishHead(VhostBackendType type, List<VhostDev> list) {
        heads.set(type.ordinal(), list.isEmpty() ? null : list.getFirst());
    }

    /** Takes a dev out of the queue; if it was the logger, the next dev takes over. */
    synchronized void unelect(VhostBackendType type, VhostDev dev) {
        List<VhostDev> list = loggers.get(type);
        if (list != null) {
            list.remove(dev);
            publishHead(type, list);
        }
    }

    /** @return whether {@code dev} scans memory sections for its type (vhost_dev_should_log) */
    boolean isLogger(VhostBackendType type, VhostDev dev) {
        return heads.get(type.ordinal()) == dev;
    }

    /** @return the type's current logger, if any dev logs */
    Optional<VhostDev> logger(VhostBackendType type) {
        return Optional.ofNullable(heads.get(type.ordinal()));
    }

    /** @return the type's current log, if a dev holds one */
    synchronized Optional<VhostLog> currentLog(VhostBackendType type) {
        return Optional.ofNullable(current.get(type));
    }
}
