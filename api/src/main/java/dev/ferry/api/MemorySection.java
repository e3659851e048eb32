package dev.ferry.api;

import java.util.Objects;
import java.util.Optional;

/**
 * A contiguous piece of an address space's flat view that maps to one region (QEMU's
 * {@code MemoryRegionSection}). Sections are immutable values; listeners get them on region
 * add, delete and nop, and on every dirty-log callback.
 *
 * @param addressSpace       name of the address space, e.g. {@code "memory"}
 * @param region             name of the memory region the section maps to
 * @param address            guest-physical address of the first byte
 * @param size               size in bytes
 * @param ramBlock           the RAM block behind the section, absent for I/O regions
 * @param offsetInBlock      byte offset of {@code address} within {@code ramBlock} (0 for I/O)
 * @param readOnly           whether guest writes are refused (ROM, or a read-only region)
 * @param dirtyLogMask       {@link DirtyClient} bits currently logging this section
 */
public record MemorySection(String addressSpace, String region, long address, long size,
                            Optional<RamBlock> ramBlock, long offsetInBlock, boolean readOnly,
                            int dirtyLogMask) {

    public MemorySection {
        Objects.requireNonNull(addressSpace, "addressSpace");
        Objects.requireNonNull(region, "region");
        Objects.requireNonNull(ramBlock, "ramBlock");
        if (size <= 0) {
            throw new IllegalArgumentException("section size must be positive: " + size);
        }
        if (ramBlock.isPresent() && (offsetInBlock < 0 || offsetInBlock + size > ramBlock.get().size())) {
            throw new IllegalArgumentException("section " + region + " [" + offsetInBlock + ", +" + size
                    + ") lies outside RAM block " + ramBlock.get().name());
        }
    }

    /** @return whether the section is backed by RAM */
    public boolean isRam() {
        return ramBlock.isPresent();
    }

    /** @return the guest-physical address one past the last byte */
    public long end() {
        return address + size;
    }

    /** @return whether {@code client} is logging this section */
    public boolean logging(DirtyClient client) {
        return client.in(dirtyLogMask);
    }

    /** @return the same section with another dirty-log mask */
    public MemorySection withDirtyLogMask(int mask) {
        return new MemorySection(addressSpace, region, address, size, ramBlock, offsetInBlock, readOnly, mask);
    }

    /**
     * Whether two sections map the same memory the same way, so that a listener can treat a
     * change between them as a nop (QEMU compares flat ranges the same way). The dirty-log
     * mask is deliberately not part of this.
     */
    public boolean sameMapping(MemorySection other) {
        return address == other.address && size == other.size && region.equals(other.region)
                && offsetInBlock == other.offsetInBlock && readOnly == other.readOnly
                && ramBlock.map(RamBlock::name).equals(other.ramBlock.map(RamBlock::name));
    }

    @Override
    public String toString() {
        return String.format("%s:%s [0x%x, 0x%x)%s%s", addressSpace, region, address, end(),
                readOnly ? " ro" : "", dirtyLogMask != 0 ? " log=" + dirtyLogMask : "");
    }
}
