package dev.ferry.testkit;

import dev.ferry.api.DirtyTrackerProvider;
import dev.ferry.kvm.dirtylog.KvmDirtyLogProvider;
import org.junit.jupiter.api.Tag;

import java.util.Map;

/** The kit on kvm-dirtylog without manual protect: KVM_GET_DIRTY_LOG clears and re-protects. */
@Tag("kvm")
class KvmDirtyLogNoManualProtectConformanceTest extends DirtyTrackerConformance {

    @Override
    protected DirtyTrackerProvider provider() {
        return new KvmDirtyLogProvider();
    }

    @Override
    protected Map<String, String> options() {
        return Map.of(KvmDirtyLogProvider.MANUAL_PROTECT, "off");
    }
}
