package dev.ferry.memory;

import java.util.Objects;

/**
 * A region that a device maps into a container at an address it may change or withdraw: a PCI
 * BAR, which QEMU's pci_update_mappings moves whenever the BAR register or the command
 * register's memory-enable bit changes. Each change is one transaction, so inside a larger one
 * (a batched state load) it costs nothing until that commits.
 */
public final class BarMapping {

    /** The address of a BAR that is not mapped. */
    public static final long UNMAPPED = -1;
    /** PCI command register bit: the device decodes memory accesses (PCI_COMMAND_MEMORY, include/hw/pci/pci_regs.h). */
    public static final int PCI_COMMAND_MEMORY = 0x2;

    private final MemoryRegion container;
    private final MemoryRegion region;
    private long address = UNMAPPED;

    /**
     * @param container where the BAR appears, usually the system address space's root
     * @param region    what the BAR holds
     */
    public BarMapping(MemoryRegion container, MemoryRegion region) {
        this.container = Objects.requireNonNull(container, "container");
        this.region = Objects.requireNonNull(region, "region");
    }

    /**
     * Maps the region at {@code to}, or unmaps it for {@link #UNMAPPED}; nothing happens if it
     * is there already.
     *
     * @throws IllegalArgumentException if {@code to} is negative and not {@link #UNMAPPED}, or
     *                                  the BAR would overlap another region of the container (a
     *                                  BAR over RAM would hide guest memory: refused, whatever a
     *                                  state load asks)
     */
    public synchronized void moveTo(long to) {
        if (to < 0 && to != UNMAPPED || to > Long.MAX_VALUE - region.size()) {
            throw new IllegalArgumentException("BAR " + region.name() + " at " + to);
        }
        if (to == address) {
            return;
        }
        long from = address;
        region.owner().transaction(() -> {
            if (to != UNMAPPED) {
                for (MemoryRegion other : container.subregions()) {
                    if (other != region && other.isEnabled() && to < other.address() + other.size()
                            && other.address() < to + region.size()) {
                        throw new IllegalArgumentException(String.format("BAR %s at 0x%x would overlap %s at 0x%x",
                                region.name(), to, other.name(), other.address()));
                    }
                }
            }
            if (from != UNMAPPED) {
                container.removeSubregion(region);
            }
            if (to != UNMAPPED) {
                container.addSubregion(to, region);
            }
        });
        address = to;
    }

    /**
     * Maps the BAR where its register says if the command register enables memory decoding,
     * else unmaps it: what pci_update_mappings does after a config write or a state load.
     *
     * @param command the PCI command register
     * @param bar     the BAR register's address
     * @throws IllegalStateException if decoding is on and the address is not aligned to the BAR's
     *                               size (BARs are naturally aligned), or {@link #moveTo} refuses it
     */
    public void update(int command, long bar) {
        if ((command & PCI_COMMAND_MEMORY) == 0) {
            moveTo(UNMAPPED);
            return;
        }
        if (bar < 0 || bar % region.size() != 0) {
            throw new IllegalStateException(String.format("BAR %s at 0x%x is not %d-byte aligned", region.name(), bar,
                    region.size()));
        }
        moveTo(bar);
    }

    /** @return where the region is mapped, or {@link #UNMAPPED} */
    public synchronized long address() {
        return address;
    }
}
