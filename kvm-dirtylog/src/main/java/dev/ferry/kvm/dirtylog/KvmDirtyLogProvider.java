package dev.ferry.kvm.dirtylog;

import dev.ferry.api.AcceleratorRequirements;
import dev.ferry.api.Availability;
import dev.ferry.api.DirtyTracker;
import dev.ferry.api.DirtyTrackerException;
import dev.ferry.api.DirtyTrackerProvider;
import dev.ferry.api.MachineContext;
import dev.ferry.api.Options;
import dev.ferry.kvm.Kvm;
import dev.ferry.kvm.KvmAccelerator;
import dev.ferry.kvm.KvmAcceleratorProperties;
import dev.ferry.kvm.KvmAcceleratorProvider;

import java.util.Map;
import java.util.Set;

/**
 * Provides {@code kvm-dirtylog}: KVM's dirty bitmaps, fetched per memory slot on every sync, with
 * manual protection (lazy re-protection per chunk) where the kernel offers it.
 *
 * <p>Option {@value #MANUAL_PROTECT} ({@code on}/{@code off}; by default on where
 * KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 is offered) becomes the accelerator property
 * {@code manual-dirty-log-protect}, because KVM only accepts the capability before slots log.
 */
public final class KvmDirtyLogProvider implements DirtyTrackerProvider {

    /** The tracker's name. */
    public static final String NAME = "kvm-dirtylog";
    /** Option: manual dirty-log protection on or off. */
    public static final String MANUAL_PROTECT = "manual-protect";

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public String description() {
        return "KVM dirty bitmaps (KVM_GET_DIRTY_LOG per memslot; KVM_CLEAR_DIRTY_LOG per chunk with manual protect)";
    }

    @Override
    public Availability probe() {
        return Kvm.probe();
    }

    @Override
    public int autoPriority() {
        return 10;
    }

    @Override
    public Set<String> optionNames() {
        return Set.of(MANUAL_PROTECT);
    }

    /**
     * @return the kvm accelerator, with {@code manual-dirty-log-protect} {@code on}, {@code off}, or
     *         {@code auto} when the option is not given
     * @throws IllegalArgumentException for an unknown option or a value that is not on/off
     */
    @Override
    public AcceleratorRequirements requirements(Options options) {
        options.requireOnly(optionNames(), "tracker " + NAME, "its option is " + MANUAL_PROTECT + "=on|off");
        String manual = options.get(MANUAL_PROTECT).isEmpty() ? "auto"
                : options.getBoolean(MANUAL_PROTECT, true) ? "on" : "off";
        return new AcceleratorRequirements(Set.of(KvmAcceleratorProvider.NAME),
                Map.of(KvmAcceleratorProperties.MANUAL_DIRTY_LOG_PROTECT, manual));
    }

    @Override
    public DirtyTracker create(MachineContext machine) {
        KvmAccelerator accel = machine.lookup(KvmAccelerator.class).orElseThrow(() -> new DirtyTrackerException(
                "tracker " + NAME + " needs the kvm accelerator, but the machine runs " + machine.accelerator()));
        if (accel.vm().dirtyRingBytes() > 0) {
            throw new DirtyTrackerException("tracker " + NAME + ": the VM uses dirty rings (dirty-ring-size), and KVM "
                    + "keeps no dirty bitmaps then; drop dirty-ring-size or use a dirty-ring tracker");
        }
        boolean manual = accel.manualDirtyLogProtect() != 0;
        var wanted = machine.options().get(MANUAL_PROTECT);
        if (wanted.isPresent() && machine.options().getBoolean(MANUAL_PROTECT, manual) != manual) {
            throw new DirtyTrackerException("tracker " + NAME + ": " + MANUAL_PROTECT + "=" + wanted.get()
                    + " but the VM was created with manual dirty-log protection " + (manual ? "on" : "off")
                    + "; the accelerator property " + KvmAcceleratorProperties.MANUAL_DIRTY_LOG_PROTECT
                    + " must follow the tracker's requirements");
        }
        return new KvmDirtyLogTracker(accel.memslots(), DirtyLogIoctls.of(accel.vm()), manual);
    }
}
