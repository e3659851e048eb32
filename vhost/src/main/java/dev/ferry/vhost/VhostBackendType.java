package dev.ferry.vhost;

import java.util.Locale;

/**
 * Where a vhost backend runs, which decides where its dirty log lives (QEMU's VhostBackendType).
 */
public enum VhostBackendType {
    /** In the kernel (vhost-net): the log is process memory handed over by address. */
    KERNEL(false),
    /** In another process (vhost-user): the log is a memfd the backend maps. */
    USER(true);

    private final boolean sharedLog;

    VhostBackendType(boolean sharedLog) {
        this.sharedLog = sharedLog;
    }

    /** @return whether the log must live in shared memory (QEMU's vhost_requires_shm_log) */
    public boolean sharedLog() {
        return sharedLog;
    }

    /** @return the type named {@code kernel} or {@code user} */
    public static VhostBackendType parse(String name) {
        return switch (name.toLowerCase(Locale.ROOT)) {
            case "kernel" -> KERNEL;
            case "user" -> USER;
            default -> throw new IllegalArgumentException("backend must be kernel or user, got '" + name + "'");
        };
    }

    @Override
    public String toString() {
        return name().toLowerCase(Locale.ROOT);
    }
}
