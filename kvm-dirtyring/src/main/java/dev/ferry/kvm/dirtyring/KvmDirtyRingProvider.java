package dev.ferry.kvm.dirtyring;

import dev.ferry.api.AcceleratorRequirements;
import dev.ferry.api.Availability;
import dev.ferry.api.DirtyTracker;
import dev.ferry.api.DirtyTrackerException;
import dev.ferry.api.DirtyTrackerProvider;
import dev.ferry.api.MachineContext;
import dev.ferry.api.Options;
import dev.ferry.kvm.Kvm;
import dev.ferry.kvm.KvmAccelerator;
import dev.ferry.kvm.KvmAcceleratorProvider;
import dev.ferry.kvm.KvmVcpu;
import dev.ferry.kvm.KvmVm;

import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.function.IntSupplier;
import java.util.function.Supplier;

/**
 * Provides {@code kvm-dirtyring}: KVM's per-vCPU dirty rings, reaped by a thread, on ring-full
 * exits and on every sync ({@link KvmDirtyRingTracker}).
 *
 * <p>Available where KVM works ({@link Kvm#probe()}) and offers a dirty ring of at least
 * {@value DirtyRingSize#MIN} entries: KVM_CAP_DIRTY_LOG_RING_ACQ_REL or KVM_CAP_DIRTY_LOG_RING
 * (asked on a VM, where the answer is the largest ring in bytes). Preferred by
 * {@code --trackers auto} over {@code kvm-dirtylog} (priority {@value #AUTO_PRIORITY} against 10).
 *
 * <p>Option {@value DirtyRingSize#OPTION}: entries per vCPU, see {@link DirtyRingSize}; it
 * becomes the kvm accelerator's property of the same name, because KVM only accepts the ring
 * before the first vCPU exists (kvm_dirty_ring_init).
 *
 * <p>Option {@value #REAP_PERIOD_OPTION}: milliseconds between the reaper thread's reaps
 * (default 10), 0 for no reaper thread (the vCPUs reap when their ring is three quarters full,
 * and every sync reaps).
 */
public final class KvmDirtyRingProvider implements DirtyTrackerProvider {

    /** The tracker's name. */
    public static final String NAME = "kvm-dirtyring";
    /** Priority for automatic choice: above kvm-dirtylog's 10. */
    public static final int AUTO_PRIORITY = 20;
    /** Option: the reaper thread's period in milliseconds, 0 for none. */
    public static final String REAP_PERIOD_OPTION = "reap-period-ms";
    /** The longest reaper period accepted: a minute (QEMU's thread sleeps one second). */
    static final long MAX_REAP_PERIOD_MS = 60_000;

    private final Supplier<Availability> kvmProbe;
    private final IntSupplier hostMaxRingBytes;
    private final BooleanSupplier pvm;

    /** The provider for this host. */
    public KvmDirtyRingProvider() {
        this(Kvm::probe, KvmDirtyRingProvider::askHostMaxRingBytes, Kvm::isPvm);
    }

    /**
     * @param kvmProbe         whether KVM works here
     * @param hostMaxRingBytes the largest ring KVM allows in bytes, 0 if none or unknown
     * @param pvm              whether the host's KVM is PVM ({@link Kvm#isPvm()})
     */
    KvmDirtyRingProvider(Supplier<Availability> kvmProbe, IntSupplier hostMaxRingBytes, BooleanSupplier pvm) {
        this.kvmProbe = kvmProbe;
        this.hostMaxRingBytes = hostMaxRingBytes;
        this.pvm = pvm;
    }

    /** @return KVM_CAP_DIRTY_LOG_RING(_ACQ_REL) of a scratch VM, 0 if KVM or the ring is missing */
    static int askHostMaxRingBytes() {
        try (Kvm kvm = Kvm.open(); KvmVm vm = kvm.createVm()) {
            return vm.maxDirtyRingBytes();
        } catch (RuntimeException | LinkageError e) {
            return 0;
        }
    }

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public String description() {
        return "KVM dirty rings (per-vCPU rings of dirtied pages, reaped by a thread and on ring-full exits)";
    }

    @Override
    public Availability probe() {
        Availability kvm;
        try {
            kvm = kvmProbe.get();
        } catch (RuntimeException | LinkageError e) {
            return Availability.no("KVM cannot be used: " + e.getMessage());
        }
        if (!kvm.available()) {
            return kvm;
        }
        if (pvm.getAsBoolean()) {
            return Availability.no("this host's KVM is PVM (module kvm_pvm), whose instruction emulator pushes "
                    + "dirty-ring entries past the ring's soft limit without stopping the vCPU, so rings overflow and "
                    + "lose dirty pages (the kernel WARNs in kvm_dirty_ring_push): use the kvm-dirtylog tracker");
        }
        int bytes = hostMaxRingBytes.getAsInt();
        if (bytes <= 0) {
            return Availability.no("this kernel's KVM has no dirty ring (neither KVM_CAP_DIRTY_LOG_RING_ACQ_REL nor "
                    + "KVM_CAP_DIRTY_LOG_RING; Linux 5.11+ on x86): use the kvm-dirtylog tracker");
        }
        if (bytes / DirtyRingSize.GFN_BYTES < DirtyRingSize.MIN) {
            return Availability.no("this kernel's KVM allows dirty rings of only " + bytes / DirtyRingSize.GFN_BYTES
                    + " entries per vCPU, fewer than " + DirtyRingSize.MIN + ": use the kvm-dirtylog tracker");
        }
        return Availability.yes();
    }

    @Override
    public int autoPriority() {
        return AUTO_PRIORITY;
    }

    @Override
    public Set<String> optionNames() {
        return Set.of(DirtyRingSize.OPTION, REAP_PERIOD_OPTION);
    }

    /**
     * @return the kvm accelerator with {@code dirty-ring-size} set (default {@value DirtyRingSize#DEFAULT})
     * @throws IllegalArgumentException for an unknown option or a size that is not a power of two in
     *                                  range, with one line stating the valid range
     */
    @Override
    public AcceleratorRequirements requirements(Options options) {
        options.requireOnly(optionNames(), "tracker " + NAME, "its options are " + DirtyRingSize.OPTION
                + "=<entries per vCPU> and " + REAP_PERIOD_OPTION + "=<milliseconds, 0 for no reaper thread>");
        reapPeriodNanos(options); // refused here, with the other options, not later when the tracker is made
        int entries = DirtyRingSize.parse(options, hostMaxRingBytes.getAsInt()); // 0 where KVM cannot be asked
        return new AcceleratorRequirements(Set.of(KvmAcceleratorProvider.NAME),
                Map.of(DirtyRingSize.OPTION, Integer.toString(entries)));
    }

    @Override
    public DirtyTracker create(MachineContext machine) {
        KvmAccelerator accel = machine.lookup(KvmAccelerator.class).orElseThrow(() -> new DirtyTrackerException(
                "tracker " + NAME + " needs the kvm accelerator, but the machine runs " + machine.accelerator()));
        KvmVm vm = accel.vm();
        int bytes = vm.dirtyRingBytes();
        if (bytes == 0) {
            throw new DirtyTrackerException("tracker " + NAME + ": the VM was created without dirty rings; the kvm "
                    + "accelerator property " + DirtyRingSize.OPTION + " must follow the tracker's requirements");
        }
        int entries = bytes / DirtyRingSize.GFN_BYTES;
        int wanted;
        try {
            wanted = DirtyRingSize.parse(machine.options(), bytes);
        } catch (IllegalArgumentException e) {
            throw new DirtyTrackerException("tracker " + NAME + ": " + e.getMessage(), e);
        }
        if (wanted != entries) {
            throw new DirtyTrackerException("tracker " + NAME + ": " + DirtyRingSize.OPTION + "=" + wanted
                    + " but the VM's rings have " + entries + " entries; the accelerator property "
                    + DirtyRingSize.OPTION + " must follow the tracker's requirements");
        }
        for (KvmVcpu v : vm.vcpus()) {
            v.dirtyRing(); // throws for a vCPU created before the ring was enabled
        }
        if (accel.dirtyRingReaper() != null) {
            throw new DirtyTrackerException("tracker " + NAME + ": another tracker reaps this VM's dirty rings already");
        }
        long reapPeriod;
        try {
            reapPeriod = reapPeriodNanos(machine.options());
        } catch (IllegalArgumentException e) {
            throw new DirtyTrackerException("tracker " + NAME + ": " + e.getMessage(), e);
        }
        KvmDirtyRingTracker tracker = new KvmDirtyRingTracker(accel.memslots(), DirtyRingIoctls.of(vm), entries,
                reapPeriod);
        KvmAccelerator.DirtyRingReaper hook = tracker.hook();
        accel.setDirtyRingReaper(hook);
        tracker.onClose(() -> {
            if (accel.dirtyRingReaper() == hook) {
                accel.setDirtyRingReaper(null);
            }
        });
        return tracker;
    }

    /**
     * @return option {@value #REAP_PERIOD_OPTION} in nanoseconds, {@link KvmDirtyRingTracker#DEFAULT_REAP_PERIOD_NANOS} if absent
     * @throws IllegalArgumentException with the valid range, if out of it
     */
    static long reapPeriodNanos(Options options) {
        long defaultMs = TimeUnit.NANOSECONDS.toMillis(KvmDirtyRingTracker.DEFAULT_REAP_PERIOD_NANOS);
        long ms = options.getLong(REAP_PERIOD_OPTION, defaultMs);
        if (ms < 0 || ms > MAX_REAP_PERIOD_MS) {
            throw new IllegalArgumentException(REAP_PERIOD_OPTION + "=" + ms + " is out of range: 0 (no reaper thread) "
                    + "to " + MAX_REAP_PERIOD_MS + " milliseconds");
        }
        return TimeUnit.MILLISECONDS.toNanos(ms);
    }
}
