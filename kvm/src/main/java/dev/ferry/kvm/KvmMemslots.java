package dev.ferry.kvm;

import dev.ferry.api.MemorySection;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The memory slot table of one VM (QEMU's {@code KVMMemoryListener.slots}): slot ids, what each
 * slot maps, and the lock that serializes slot changes with dirty-log reads and clears
 * ({@code kvm_slots_lock}).
 *
 * <p>This class only keeps the books; the KVM accelerator issues KVM_SET_USER_MEMORY_REGION and
 * updates the table under {@link #lock()}. Trackers hold the same lock around every
 * KVM_GET_DIRTY_LOG and KVM_CLEAR_DIRTY_LOG, so a slot cannot be deleted and its id given to
 * another slot between looking it up and using its id — which would read or clear the wrong
 * slot's log and lose dirty pages.
 *
 * <p>Ids are allocated lowest-free first, as kvm_alloc_slot does, from 0 up to the VM's
 * KVM_CAP_NR_MEMSLOTS.
 */
public final class KvmMemslots {

    private final int maxSlots;
    private final ReentrantLock lock = new ReentrantLock();
    private final TreeMap<Integer, KvmMemslot> byId = new TreeMap<>();

    /** @param maxSlots the number of slot ids KVM accepts (KVM_CAP_NR_MEMSLOTS), at least 1 */
    public KvmMemslots(int maxSlots) {
        if (maxSlots < 1 || maxSlots > 0x8000) {
            throw new IllegalArgumentException("memory slot count must be 1 to 32768: " + maxSlots);
        }
        this.maxSlots = maxSlots;
    }

    /** @return the number of slot ids available */
    public int maxSlots() {
        return maxSlots;
    }

    /** @return the lock that guards the table and every ioctl naming a slot id */
    public ReentrantLock lock() {
        return lock;
    }

    /**
     * Records a new slot under the lowest free id. The caller holds the lock and creates the slot
     * in KVM right after (removing it again with {@link #remove} if KVM refuses).
     *
     * @param section       the section the slot maps
     * @param gpa           guest-physical start (page-aligned)
     * @param size          bytes (page-aligned, positive)
     * @param offsetInBlock byte offset of {@code gpa} in the section's RAM block (page-aligned)
     * @param flags         kvm_userspace_memory_region flags
     * @throws IllegalStateException if every id is taken
     */
    public KvmMemslot add(MemorySection section, long gpa, long size, long offsetInBlock, int flags) {
        lock.lock();
        try {
            if (gpa % KvmVm.PAGE_SIZE != 0 || size <= 0 || size % KvmVm.PAGE_SIZE != 0
                    || offsetInBlock % KvmVm.PAGE_SIZE != 0) {
                throw new IllegalArgumentException(String.format(
                        "memory slot at gpa %#x size %#x block offset %#x: all must be page-aligned", gpa, size,
                        offsetInBlock));
            }
            int id = lowestFreeId();
            if (id < 0) {
                throw new IllegalStateException("all " + maxSlots + " KVM memory slots are in use (KVM_CAP_NR_MEMSLOTS); "
                        + "cannot map " + section);
            }
            KvmMemslot slot = new KvmMemslot(id, section, gpa, size, offsetInBlock, flags);
            byId.put(id, slot);
            return slot;
        } finally {
            lock.unlock();
        }
    }

    private int lowestFreeId() {
        int expected = 0;
        for (int id : byId.keySet()) {
            if (id != expected) {
                return expected;
            }
            expected++;
        }
        return expected < maxSlots ? expected : -1;
    }

    /** Forgets a slot (deleted from KVM, or never created); its id becomes free. */
    public void remove(KvmMemslot slot) {
        lock.lock();
        try {
            if (byId.get(slot.id()) == slot) {
                byId.remove(slot.id());
                slot.markRemoved();
            }
        } finally {
            lock.unlock();
        }
    }

    /** Records new flags for a slot, after KVM accepted them. */
    public void setFlags(KvmMemslot slot, int flags) {
        lock.lock();
        try {
            slot.setFlags(flags);
        } finally {
            lock.unlock();
        }
    }

    /** @return the slot that maps {@code section} (same address, size, region and block offset) */
    public Optional<KvmMemslot> find(MemorySection section) {
        lock.lock();
        try {
            for (KvmMemslot slot : byId.values()) {
                if (slot.section().sameMapping(section)) {
                    return Optional.of(slot);
                }
            }
            return Optional.empty();
        } finally {
            lock.unlock();
        }
    }

    /** @return the slot with id {@code id}, if one exists */
    public Optional<KvmMemslot> get(int id) {
        lock.lock();
        try {
            return Optional.ofNullable(byId.get(id));
        } finally {
            lock.unlock();
        }
    }

    /** @return every slot, by id */
    public List<KvmMemslot> all() {
        lock.lock();
        try {
            return List.copyOf(new ArrayList<>(byId.values()));
        } finally {
            lock.unlock();
        }
    }

    /** @return the number of slots in use */
    public int size() {
        lock.lock();
        try {
            return byId.size();
        } finally {
            lock.unlock();
        }
    }
}
