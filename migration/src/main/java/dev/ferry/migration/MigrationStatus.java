package dev.ferry.migration;

import java.util.Locale;

/** Where a migration is, with QEMU's query-migrate status names. */
public enum MigrationStatus {
    SETUP, ACTIVE, DEVICE, COMPLETED, FAILED, CANCELLED;

    /** @return whether the migration is over */
    public boolean finished() {
        return this == COMPLETED || this == FAILED || this == CANCELLED;
    }

    /** @return the QEMU name, e.g. "completed" */
    public String qemuName() {
        return name().toLowerCase(Locale.ROOT);
    }
}
