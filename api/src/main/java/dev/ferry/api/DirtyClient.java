package dev.ferry.api;

/**
 * The clients of dirty memory tracking, as in QEMU's {@code DIRTY_MEMORY_*} (include/exec/ramlist.h).
 * Each client has its own bitmap per {@link RamBlock}; a {@link MemorySection}'s dirty-log mask has
 * bit {@link #bit()} set while that client logs the section.
 */
public enum DirtyClient {
    /** Display refresh (QEMU's DIRTY_MEMORY_VGA). */
    VGA,
    /** Translated-code invalidation (QEMU's DIRTY_MEMORY_CODE). */
    CODE,
    /** Live migration (QEMU's DIRTY_MEMORY_MIGRATION). */
    MIGRATION;

    /** @return this client's bit in a dirty-log mask */
    public int bit() {
        return 1 << ordinal();
    }

    /** @return whether {@code mask} has this client's bit */
    public boolean in(int mask) {
        return (mask & bit()) != 0;
    }
}
