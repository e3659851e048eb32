package dev.ferry.testkit;

import dev.ferry.api.DirtyTrackerProvider;
import dev.ferry.machine.soft.SoftTrackerProvider;

/** The kit on the soft tracker, as a plugin author would run it. */
class SoftTrackerConformanceTest extends DirtyTrackerConformance {

    @Override
    protected DirtyTrackerProvider provider() {
        return new SoftTrackerProvider();
    }
}
