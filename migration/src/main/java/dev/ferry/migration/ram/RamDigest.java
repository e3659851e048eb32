package dev.ferry.migration.ram;

import dev.ferry.memory.MemfdRamBlock;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.stream.IntStream;
import java.util.zip.CRC32C;

/**
 * The digest of a RAM block that source and destination compare once the guest is stopped: a
 * CRC32C (intrinsic on x86) of each 2 MiB chunk, computed on all cores, then a CRC32C of those
 * in order. Whole chunks rather than pages: per-page calls cost more than the checksum itself.
 */
public final class RamDigest {

    /** Bytes per chunk. */
    static final int CHUNK = 2 << 20;
    private static final MemorySegment ZERO_PAGE = Arena.global().allocate(4096);

    private RamDigest() {
    }

    /** @return the digest of the block's current contents */
    public static int of(MemfdRamBlock block) {
        MemorySegment host = block.host();
        long size = block.size();
        int chunks = Math.toIntExact((size + CHUNK - 1) / CHUNK);
        int[] crcs = new int[chunks];
        IntStream.range(0, chunks).parallel().forEach(c -> {
            long start = (long) c * CHUNK;
            CRC32C crc = new CRC32C();
            crc.update(host.asSlice(start, Math.min(CHUNK, size - start)).asByteBuffer());
            crcs[c] = (int) crc.getValue();
        });
        ByteBuffer b = ByteBuffer.allocate(chunks * 4).order(ByteOrder.LITTLE_ENDIAN);
        b.asIntBuffer().put(crcs);
        CRC32C crc = new CRC32C();
        crc.update(b);
        return (int) crc.getValue();
    }

    /** @return a page of zeros, for comparisons */
    static MemorySegment zeroPage() {
        return ZERO_PAGE;
    }
}
