package dev.ferry.api;

/**
 * Told about changes to an address space's topology and about dirty logging (QEMU's
 * {@code MemoryListener}, see docs/devel/memory.rst). Every callback has a no-op default, so a
 * listener overrides only what it needs.
 *
 * <h2>Topology</h2>
 * Each outermost transaction commit produces one pass: {@link #begin()}, then
 * {@link #regionDel} for every section that went away (listeners in reverse priority order),
 * then {@link #regionAdd} and {@link #regionNop} for new and unchanged sections (in priority
 * order), then {@link #commit()}. A section whose dirty-log mask changed gets
 * {@link #logStart} or {@link #logStop} in the same pass. When a listener registers, the
 * current topology is replayed to it as adds.
 *
 * <h2>Dirty logging</h2>
 * {@link #logGlobalStart()} and {@link #logGlobalStop()} bracket a migration.
 * When the engine syncs the dirty log, a listener collects what the guest wrote since the last
 * sync and marks it in the section's {@link RamBlock}. It does that either per section in
 * {@link #logSync} or once for everything in {@link #logSyncGlobal} — never both: the engine
 * refuses to register a listener that overrides both, since the pages would be reported twice
 * at twice the cost. After all listeners synced, {@link #logGlobalAfterSync()} runs.
 * {@link #logClear} tells a listener that the migration is about to send (and so has cleared
 * its own bits for) a range, so a listener that defers write-protection (KVM's manual protect)
 * can re-arm it just in time.
 *
 * <p>Callbacks run on the thread that changed the topology or requested the sync; a listener
 * must not start a transaction from inside a callback.
 */
public interface MemoryListener {

    /** Priority of listeners that do not care; lower runs earlier on add, later on delete. */
    int DEFAULT_PRIORITY = 0;
    /** Priority of accelerators' listeners (QEMU's MEMORY_LISTENER_PRIORITY_ACCEL, include/exec/memory.h). */
    int ACCEL_PRIORITY = 10;
    /** Priority of device backends' listeners, e.g. vhost (QEMU's MEMORY_LISTENER_PRIORITY_DEV_BACKEND). */
    int DEV_BACKEND_PRIORITY = 10;

    /** @return a short name for logs and error messages */
    default String name() {
        return getClass().getSimpleName();
    }

    /** @return ordering among listeners: ascending on add, descending on delete */
    default int priority() {
        return DEFAULT_PRIORITY;
    }

    /** A topology pass begins. */
    default void begin() {
    }

    /** A topology pass ends; the new topology is complete. */
    default void commit() {
    }

    /** A section appeared (or changed its mapping). */
    default void regionAdd(MemorySection section) {
    }

    /** A section went away (or is about to be replaced). */
    default void regionDel(MemorySection section) {
    }

    /** A section is unchanged by this pass. */
    default void regionNop(MemorySection section) {
    }

    /**
     * Dirty logging turned on for a section.
     *
     * @param oldMask the section's previous dirty-log mask
     * @param newMask its new mask
     */
    default void logStart(MemorySection section, int oldMask, int newMask) {
    }

    /**
     * Dirty logging turned off for a section (at least one client stopped).
     *
     * @param oldMask the section's previous dirty-log mask
     * @param newMask its new mask
     */
    default void logStop(MemorySection section, int oldMask, int newMask) {
    }

    /** Report the pages of this section written since the previous sync. */
    default void logSync(MemorySection section) {
    }

    /**
     * Report every page written since the previous sync, once for all sections.
     *
     * @param lastStage true for the final sync with the vCPUs stopped
     */
    default void logSyncGlobal(boolean lastStage) {
    }

    /**
     * The migration cleared its own bits for {@code [offset, offset + length)} of the section's
     * RAM block and is about to send those pages.
     *
     * @param offset byte offset within the section's RAM block
     * @param length length in bytes
     */
    default void logClear(MemorySection section, long offset, long length) {
    }

    /** Dirty logging begins for the whole machine (migration setup). */
    default void logGlobalStart() {
    }

    /** Dirty logging ends for the whole machine. */
    default void logGlobalStop() {
    }

    /** Every listener has synced. */
    default void logGlobalAfterSync() {
    }
}
