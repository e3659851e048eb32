package dev.ferry.testkit;

import dev.ferry.api.DirtyTrackerProvider;
import dev.ferry.kvm.dirtyring.KvmDirtyRingProvider;
import org.junit.jupiter.api.Tag;

/** The kit on kvm-dirtyring: per-vCPU rings, reaped by its thread and on every sync. */
@Tag("kvm")
class KvmDirtyRingConformanceTest extends DirtyTrackerConformance {

    @Override
    protected DirtyTrackerProvider provider() {
        return new KvmDirtyRingProvider();
    }
}
