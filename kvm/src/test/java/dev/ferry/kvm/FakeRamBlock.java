package dev.ferry.kvm;

import dev.ferry.api.RamBlock;

import java.lang.foreign.MemorySegment;

/** A RAM block with no memory behind it, for slot bookkeeping tests. */
record FakeRamBlock(String name, long size) implements RamBlock {

    @Override
    public MemorySegment host() {
        throw new UnsupportedOperationException("no memory");
    }

    @Override
    public void setDirty(long offset, long length) {
    }

    @Override
    public long setDirtyBitmap(long firstPage, MemorySegment bitmap, long pages) {
        return 0;
    }
}
