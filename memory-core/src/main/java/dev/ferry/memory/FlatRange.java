package dev.ferry.memory;

import dev.ferry.api.MemorySection;

import java.util.Optional;

/**
 * One piece of a flat view: {@code [address, address + size)} maps to {@code region} from
 * {@code offsetInRegion} (QEMU's {@code FlatRange}). The region is always a terminal one (RAM
 * or I/O): containers and aliases are resolved by rendering.
 */
record FlatRange(MemoryRegion region, long address, long size, long offsetInRegion, boolean readOnly,
                 int dirtyLogMask) {

    long end() {
        return address + size;
    }

    /** QEMU's {@code flatrange_equal}: the same mapping, whatever the dirty-log mask. */
    boolean sameMapping(FlatRange other) {
        return region == other.region && address == other.address && size == other.size
                && offsetInRegion == other.offsetInRegion && readOnly == other.readOnly;
    }

    /** Whether {@code next} continues this range, so the two can be one (QEMU's {@code can_merge}). */
    boolean canMerge(FlatRange next) {
        return region == next.region && end() == next.address
                && offsetInRegion + size == next.offsetInRegion
                && readOnly == next.readOnly && dirtyLogMask == next.dirtyLogMask;
    }

    MemorySection toSection(String addressSpace) {
        MemfdRamBlock block = region.ramBlock();
        return new MemorySection(addressSpace, region.name(), address, size, Optional.ofNullable(block),
                block == null ? 0 : region.ramOffset() + offsetInRegion, readOnly, dirtyLogMask);
    }
}
