package dev.ferry.kvm.dirtyring;

import dev.ferry.kvm.KvmDirtyRing;

/**
 * Where harvested ring entries go. Entries may be buffered; {@link #flush()} comes at the end of
 * every reap, before KVM_RESET_DIRTY_RINGS re-protects the pages. Called with the reap lock held.
 */
public interface GfnSink extends KvmDirtyRing.GfnConsumer {

    /** Delivers whatever is buffered. */
    default void flush() {
    }
}
