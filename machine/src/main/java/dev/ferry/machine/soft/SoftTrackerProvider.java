package dev.ferry.machine.soft;

import dev.ferry.api.AcceleratorRequirements;
import dev.ferry.api.Availability;
import dev.ferry.api.DirtyTracker;
import dev.ferry.api.DirtyTrackerException;
import dev.ferry.api.DirtyTrackerProvider;
import dev.ferry.api.MachineContext;
import dev.ferry.api.MemorySection;
import dev.ferry.api.Options;

import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;

/** Provides {@code soft}: the dirty log of the software accelerator, synced per section. */
public final class SoftTrackerProvider implements DirtyTrackerProvider {

    @Override
    public String name() {
        return "soft";
    }

    @Override
    public String description() {
        return "per-memslot dirty log of the soft accelerator, read and cleared on each sync";
    }

    @Override
    public Availability probe() {
        return Availability.yes();
    }

    @Override
    public int autoPriority() {
        return 1;
    }

    @Override
    public AcceleratorRequirements requirements(Options options) {
        return AcceleratorRequirements.accelerator("soft");
    }

    @Override
    public DirtyTracker create(MachineContext machine) {
        SoftAccelerator accel = machine.lookup(SoftAccelerator.class).orElseThrow(() -> new DirtyTrackerException(
                "tracker soft needs the soft accelerator, but the machine runs " + machine.accelerator()));
        return new SoftTracker(accel);
    }

    /** Reads each logged memslot's log, like kvm_physical_sync_dirty_bitmap. */
    private static final class SoftTracker implements DirtyTracker {

        private final SoftAccelerator accelerator;
        private final AtomicLong syncs = new AtomicLong();
        private final AtomicLong pages = new AtomicLong();

        SoftTracker(SoftAccelerator accelerator) {
            this.accelerator = accelerator;
        }

        @Override
        public String name() {
            return "soft";
        }

        @Override
        public void logSync(MemorySection section) {
            accelerator.memslot(section).ifPresent(slot -> {
                pages.addAndGet(slot.syncInto(section.ramBlock().orElseThrow()));
                syncs.incrementAndGet();
            });
        }

        @Override
        public Map<String, Long> statistics() {
            return Map.of("section-syncs", syncs.get(), "pages-reported", pages.get());
        }
    }
}
