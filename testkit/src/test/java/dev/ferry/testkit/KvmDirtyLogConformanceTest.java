package dev.ferry.testkit;

import dev.ferry.api.DirtyTrackerProvider;
import dev.ferry.kvm.dirtylog.KvmDirtyLogProvider;
import org.junit.jupiter.api.Tag;

/** The kit on kvm-dirtylog with KVM's manual protect, its default. */
@Tag("kvm")
class KvmDirtyLogConformanceTest extends DirtyTrackerConformance {

    @Override
    protected DirtyTrackerProvider provider() {
        return new KvmDirtyLogProvider();
    }
}
