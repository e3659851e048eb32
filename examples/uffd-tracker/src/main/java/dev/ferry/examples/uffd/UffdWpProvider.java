package dev.ferry.examples.uffd;

import dev.ferry.api.Availability;
import dev.ferry.api.DirtyTracker;
import dev.ferry.api.DirtyTrackerException;
import dev.ferry.api.DirtyTrackerProvider;
import dev.ferry.api.MachineContext;

/**
 * Tracker {@code uffd-wp}: guest RAM write-protected with a userfaultfd in asynchronous mode, and
 * the written pages read back with {@code PAGEMAP_SCAN} (Linux 6.7+). It watches the host memory
 * of the RAM blocks, so it sees every writer: the guest's vCPUs under KVM or the software
 * accelerator, and host threads such as vhost backends writing by DMA. It asks nothing of the
 * accelerator, so it runs with any, alone or beside another tracker.
 *
 * <p>Found by {@link java.util.ServiceLoader} through
 * {@code META-INF/services/dev.ferry.api.DirtyTrackerProvider}; it uses {@code ferry-api} only.
 */
public final class UffdWpProvider implements DirtyTrackerProvider {

    /** The name users give {@code --trackers}. */
    public static final String NAME = "uffd-wp";

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public String description() {
        return "userfaultfd write-protect (async) + PAGEMAP_SCAN: sees writes by vCPUs and by host threads (DMA)";
    }

    @Override
    public Availability probe() {
        String why = WriteProtect.unavailableReason();
        return why == null ? Availability.yes() : Availability.no(why);
    }

    @Override
    public DirtyTracker create(MachineContext machine) {
        try {
            return new UffdWpTracker(WriteProtect.open());
        } catch (UffdException e) {
            throw new DirtyTrackerException("tracker " + NAME + ": " + e.getMessage(), e);
        }
    }
}
