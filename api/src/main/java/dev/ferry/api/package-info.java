/**
 * The plugin-facing API of Ferry: everything a third-party dirty tracker or device needs, and
 * nothing else. This package depends on the JDK alone.
 *
 * <p>The model is QEMU's memory API. Guest memory is described by memory regions; the engine
 * renders them into a flat view per address space and tells every registered
 * {@link dev.ferry.api.MemoryListener} about the resulting {@link dev.ferry.api.MemorySection}s.
 * A {@link dev.ferry.api.DirtyTracker} is such a listener: when migration syncs the dirty log it
 * reports the pages the guest wrote by marking them in the section's {@link dev.ferry.api.RamBlock}.
 *
 * <p>Plugins are found with {@link java.util.ServiceLoader}: a jar lists its
 * {@link dev.ferry.api.DirtyTrackerProvider} or {@link dev.ferry.api.DeviceProvider} under
 * {@code META-INF/services/}, and Ferry wires it without any change to Ferry itself.
 */
package dev.ferry.api;
