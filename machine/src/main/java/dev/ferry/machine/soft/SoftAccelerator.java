package dev.ferry.machine.soft;

import dev.ferry.api.MemoryListener;
import dev.ferry.api.MemorySection;
import dev.ferry.machine.Accelerator;
import dev.ferry.machine.VcpuLoop;
import dev.ferry.machine.VcpuSetup;
import dev.ferry.memory.AddressSpace;
import dev.ferry.memory.MemfdRamBlock;
import dev.ferry.memory.MemorySystem;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Optional;

/**
 * The software accelerator: vCPUs are Java threads that run the workload over guest RAM, as
 * TCG runs guest code. Like KVM it keeps memslots in step with the flat view through a memory
 * listener, and while a slot is logged every guest write marks the slot's own dirty log; the
 * {@code soft} tracker reads and clears that log on sync, as kvm-dirtylog does with
 * KVM_GET_DIRTY_LOG. So the whole tracking pipeline runs, for real, on any host.
 */
public final class SoftAccelerator implements Accelerator {

    private volatile SoftMemslot[] memslots = new SoftMemslot[0];
    private final List<SoftVcpu> vcpus = new ArrayList<>();
    private final Memslots listener = new Memslots();
    private AddressSpace addressSpace;

    @Override
    public String name() {
        return "soft";
    }

    @Override
    public void attach(MemorySystem memory, AddressSpace systemMemory) {
        this.addressSpace = systemMemory;
        systemMemory.registerListener(listener);
    }

    @Override
    public VcpuLoop createVcpu(int index, VcpuSetup setup) {
        SoftVcpu vcpu = new SoftVcpu(this, index, setup);
        vcpus.add(vcpu);
        return vcpu;
    }

    @Override
    public <T> Optional<T> lookup(Class<T> type) {
        return type.isInstance(this) ? Optional.of(type.cast(this)) : Optional.empty();
    }

    /** @return the memslots, in block-page order */
    public List<SoftMemslot> memslots() {
        return List.of(memslots);
    }

    /** @return the memslot mapping {@code section}, if any */
    public Optional<SoftMemslot> memslot(MemorySection section) {
        for (SoftMemslot slot : memslots) {
            if (slot.section().sameMapping(section)) {
                return Optional.of(slot);
            }
        }
        return Optional.empty();
    }

    /** @return the slot holding page {@code blockPage} of {@code block}, or null */
    SoftMemslot find(MemfdRamBlock block, long blockPage) {
        for (SoftMemslot slot : memslots) {
            if (slot.block() == block && slot.contains(blockPage)) {
                return slot;
            }
        }
        return null;
    }

    @Override
    public void close() {
        if (addressSpace != null) {
            addressSpace.unregisterListener(listener);
            addressSpace = null;
        }
    }

    /** Keeps memslots in step with the flat view, as kvm_memory_listener does. */
    private final class Memslots implements MemoryListener {

        @Override
        public String name() {
            return "soft-memslots";
        }

        @Override
        public void regionAdd(MemorySection section) {
            if (!section.isRam()) {
                return;
            }
            MemfdRamBlock block = (MemfdRamBlock) section.ramBlock().orElseThrow();
            SoftMemslot slot = new SoftMemslot(section, block);
            slot.setLogging(section.dirtyLogMask() != 0);
            List<SoftMemslot> list = new ArrayList<>(List.of(memslots));
            list.add(slot);
            list.sort(Comparator.comparingLong(SoftMemslot::firstPage));
            memslots = list.toArray(SoftMemslot[]::new);
        }

        @Override
        public void regionDel(MemorySection section) {
            if (!section.isRam()) {
                return;
            }
            List<SoftMemslot> list = new ArrayList<>(List.of(memslots));
            for (SoftMemslot slot : list) {
                if (slot.section().sameMapping(section)) {
                    list.remove(slot);
                    memslots = list.toArray(SoftMemslot[]::new);
                    // As kvm_set_phys_mem: a logged slot's dirty pages are reported before it goes.
                    slot.retire();
                    if (slot.logging()) {
                        slot.syncInto(slot.block());
                    }
                    return;
                }
            }
        }

        @Override
        public void logStart(MemorySection section, int oldMask, int newMask) {
            if (oldMask == 0) {
                memslot(section).ifPresent(slot -> slot.setLogging(true));
            }
        }

        @Override
        public void logStop(MemorySection section, int oldMask, int newMask) {
            if (newMask == 0) {
                memslot(section).ifPresent(slot -> slot.setLogging(false));
            }
        }
    }
}
