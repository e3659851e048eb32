package dev.ferry.kvm;

import dev.ferry.api.Availability;
import dev.ferry.machine.Accelerator;
import dev.ferry.machine.AcceleratorProvider;

import java.util.Map;
import java.util.Set;

/**
 * Provides the {@code kvm} accelerator: vCPUs run by the kernel's KVM through {@code /dev/kvm}.
 * Preferred over {@code soft} by {@code --accel auto} wherever {@link Kvm#probe()} says KVM works,
 * except on PVM ({@link Kvm#isPvm()}), which emulates Ferry's guest instruction by instruction: there
 * the soft accelerator runs the workload at the rate asked, and {@code --accel kvm} still chooses KVM.
 * Properties: see {@link KvmAcceleratorProperties}.
 */
public final class KvmAcceleratorProvider implements AcceleratorProvider {

    /** The accelerator's name. */
    public static final String NAME = "kvm";

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public String description() {
        return "hardware virtualization through /dev/kvm: guest code runs on the CPU, KVM logs dirty pages";
    }

    @Override
    public Availability probe() {
        return Kvm.probe();
    }

    @Override
    public int autoPriority() {
        return Kvm.isPvm() ? -1 : 10;
    }

    @Override
    public Set<String> propertyNames() {
        return KvmAcceleratorProperties.NAMES;
    }

    /**
     * @throws IllegalArgumentException for a bad property (unknown name, ring size out of range,
     *                                  manual protect required but missing)
     * @throws IllegalStateException    if KVM is not usable on this host, with the probe's reason
     */
    @Override
    public Accelerator create(Map<String, String> properties) {
        KvmAcceleratorProperties parsed = KvmAcceleratorProperties.parse(properties);
        Availability available = probe();
        if (!available.available()) {
            throw new IllegalStateException("the kvm accelerator is not available here: " + available.reason());
        }
        return new KvmAccelerator(parsed);
    }
}
