package dev.ferry.examples.uffd;

import dev.ferry.api.DirtyTrackerProvider;
import dev.ferry.testkit.DirtyTrackerConformance;

import java.util.EnumSet;
import java.util.List;
import java.util.Set;

/** Ferry's conformance kit on uffd-wp: all it takes is the provider and what it sees. */
class UffdWpConformanceTest extends DirtyTrackerConformance {

    @Override
    protected DirtyTrackerProvider provider() {
        return new UffdWpProvider();
    }

    @Override
    protected Set<WriteSource> sees() {
        // It watches host memory itself, so DMA by host threads is reported too.
        return EnumSet.of(WriteSource.GUEST, WriteSource.HOST);
    }

    @Override
    protected List<String> combinedWith() {
        // Beside the accelerator's own tracker, whichever of these runs here.
        return List.of("soft", "kvm-dirtylog", "kvm-dirtyring");
    }
}
