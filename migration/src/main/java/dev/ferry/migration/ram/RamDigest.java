package dev.ferry.migration.ram;

import dev.ferry.memory.MemfdRamBlock;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.stream.IntStream;
import java.util.zip.CRC32C;

/**
 * The digest of a RAM block that source and destination compare at switchover: a CRC32C
 * (intrinsic on x86) of each page, then a CRC32C of those values in page order.
 *
 * <p>Per page, so that the destination can keep it up to date as pages arrive
 * ({@link #update}) and its digest at switchover costs one pass over a small array, not over
 * RAM. The source computes it over its stopped guest ({@link #of}) once the stream is out, while
 * the destination starts the guest: it must read the RAM itself, since the point is to catch
 * pages a tracker failed to report.
 */
public final class RamDigest {

    private static final int PAGE = 4096;
    private static final MemorySegment ZERO_PAGE = Arena.global().allocate(PAGE);
    private static final int ZERO_PAGE_CRC = crc(ZERO_PAGE.asByteBuffer());

    private final int[] crcs;

    private RamDigest(int[] crcs) {
        this.crcs = crcs;
    }

    /** @return the digests of a block whose pages are all zero (a fresh destination) */
    public static RamDigest ofZeroPages(long pages) {
        int[] crcs = new int[Math.toIntExact(pages)];
        Arrays.fill(crcs, ZERO_PAGE_CRC);
        return new RamDigest(crcs);
    }

    /**
     * @return the digests of the block's current contents, computed on all cores: the stream is
     *         out by then and the migration waits for nothing else
     */
    public static RamDigest of(MemfdRamBlock block) {
        int pages = Math.toIntExact(block.pages());
        int[] crcs = new int[pages];
        MemorySegment host = block.host();
        int pagesPerTask = 2048;
        IntStream.range(0, (pages + pagesPerTask - 1) / pagesPerTask).parallel().forEach(task -> {
            int first = task * pagesPerTask;
            int end = Math.min(pages, first + pagesPerTask);
            // One buffer view per task, sliced per page: cheaper than a view per page.
            long base = (long) first * PAGE;
            ByteBuffer view = host.asSlice(base, (long) (end - first) * PAGE).asByteBuffer();
            CRC32C c = new CRC32C();
            for (int p = first; p < end; p++) {
                c.reset();
                c.update(view.slice((p - first) * PAGE, PAGE));
                crcs[p] = (int) c.getValue();
            }
        });
        return new RamDigest(crcs);
    }

    /** Records the contents of {@code page} as just written. */
    public void update(long page, MemorySegment data) {
        crcs[Math.toIntExact(page)] = crc(data.asByteBuffer());
    }

    /** @return the block's digest */
    public int value() {
        ByteBuffer b = ByteBuffer.allocate(crcs.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        b.asIntBuffer().put(crcs);
        CRC32C c = new CRC32C();
        c.update(b);
        return (int) c.getValue();
    }

    /** @return a page of zeros, for comparisons */
    static MemorySegment zeroPage() {
        return ZERO_PAGE;
    }

    private static int crc(ByteBuffer data) {
        CRC32C c = new CRC32C();
        c.update(data);
        return (int) c.getValue();
    }
}
