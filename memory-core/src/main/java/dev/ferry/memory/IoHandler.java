package dev.ferry.memory;

/**
 * Accesses to an I/O region (QEMU's {@code MemoryRegionOps}): the region's device decides what a
 * read returns and what a write does. Offsets are relative to the region.
 */
public interface IoHandler {

    /** @return the value read, {@code size} bytes (1, 2, 4 or 8), little-endian */
    long read(long offset, int size);

    /** Writes {@code size} bytes of {@code value}. */
    void write(long offset, long value, int size);
}
