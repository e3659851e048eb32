package dev.ferry.machine.ivshmem;

import dev.ferry.api.Device;
import dev.ferry.api.MachineContext;
import dev.ferry.api.vmstate.VMState;
import dev.ferry.api.vmstate.VMStateDescription;
import dev.ferry.memory.AddressSpace;
import dev.ferry.memory.BarMapping;
import dev.ferry.memory.MemfdRamBlock;
import dev.ferry.memory.MemorySystem;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.util.Map;

/**
 * A PCI device with shared memory in BAR 2 (QEMU's ivshmem-plain). The memory is a RAM block of
 * its own, which migrates with guest RAM; the BAR's address and the command register's memory
 * enable bit are device state. On the source the firmware maps the BAR at boot and a header is
 * written at its start (what a peer of the shared memory would write). On a destination the BAR
 * stays unmapped until post-load maps it where the source had it, then reads the header through
 * the address space, as a guest access would, and refuses a state whose BAR shows anything else:
 * the load changes the topology, and reads it in the middle of the load.
 */
public final class IvshmemDevice implements Device {

    static final String MAGIC = "FERRYSHM";

    static final VMStateDescription<IvshmemDevice> VMSD = VMStateDescription.<IvshmemDevice>builder("ivshmem")
            .uint64Equal("size", d -> d.block.size())
            .uint16("command", d -> d.command, (d, v) -> d.command = (int) v)
            .uint64("bar2", d -> d.bar2, (d, v) -> d.bar2 = v)
            .uint32("intrmask", d -> d.intrmask, (d, v) -> d.intrmask = v)
            .uint32("intrstatus", d -> d.intrstatus, (d, v) -> d.intrstatus = v)
            .postLoad((d, version) -> d.updateMappings())
            .build();

    private final String id;
    private final AddressSpace system;
    private final MemfdRamBlock block;
    private final BarMapping mapping;
    private final MachineContext machine;
    /** What the peer writes at the start of the shared memory, and a load expects to find there. */
    private final byte[] header;
    private int command;
    private long bar2 = -1;
    private long intrmask;
    private long intrstatus;

    private IvshmemDevice(String id, MachineContext machine, long size) {
        this.id = id;
        this.machine = machine;
        MemorySystem memory = machine.lookup(MemorySystem.class).orElseThrow(
                () -> new IllegalArgumentException("the machine has no memory system to map a BAR in"));
        this.system = machine.lookup(AddressSpace.class).orElseThrow();
        this.block = memory.allocateRam(id + ".bar2", size);
        this.mapping = new BarMapping(system.root(), memory.ramRegion(id + ".bar2", block));
        this.header = (MAGIC + id).getBytes(StandardCharsets.US_ASCII);
    }

    /**
     * @throws IllegalArgumentException if the size is not a power of two from 4 KiB to 1 GiB
     */
    static IvshmemDevice create(String id, MachineContext machine) {
        long size = IvshmemProvider.size(machine.options());
        return new IvshmemDevice(id, machine, size);
    }

    @Override
    public String id() {
        return id;
    }

    @Override
    public VMState<?> vmstate() {
        return VMState.of(VMSD, this);
    }

    /** Firmware assigns BAR 2 and enables memory decoding; the peer writes its header. */
    @Override
    public synchronized void boot() {
        bar2 = machine.assignBar(block.size());
        command |= BarMapping.PCI_COMMAND_MEMORY;
        MemorySegment.copy(MemorySegment.ofArray(header), 0, block.host(), 0, header.length);
        block.setDirty(0, header.length);
        updateMappings();
    }

    /**
     * Maps or unmaps BAR 2 as the command register and BAR say (QEMU's pci_update_mappings): a
     * topology change, batched with the rest of the load when the destination loads state in
     * one transaction. After a load, checks the header through the address space.
     */
    private synchronized void updateMappings() {
        mapping.update(command, bar2);
        if (mapping.address() != BarMapping.UNMAPPED) {
            checkHeader();
        }
    }

    private void checkHeader() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment got = arena.allocate(header.length);
            system.read(mapping.address(), got);
            byte[] bytes = got.toArray(ValueLayout.JAVA_BYTE);
            if (!java.util.Arrays.equals(bytes, header)) {
                throw new IllegalStateException(String.format("device %s: BAR 2 at 0x%x does not show this device's "
                        + "shared memory (read '%s')", id, mapping.address(), new String(bytes, StandardCharsets.US_ASCII)
                        .replaceAll("[^ -~]", "?")));
            }
        }
    }

    /** @return where BAR 2 is mapped, or -1 */
    public long mappedAt() {
        return mapping.address();
    }

    @Override
    public Map<String, Long> statistics() {
        return Map.of("bar2-bytes", block.size());
    }

    @Override
    public void close() {
        mapping.moveTo(BarMapping.UNMAPPED);
    }

    @Override
    public String toString() {
        return "ivshmem " + id + " (" + block.size() / 1024 + " KiB)";
    }
}
