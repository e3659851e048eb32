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
 *
 * <p>It is the one pass over memory a migration makes that a plain copy does not, on the
 * destination's loading thread. Of the JDK's checksums, CRC32C is as fast as any on the CPU
 * measured (an AMD EPYC; a page in cache: 17–18 GB/s, CRC32 10–11, Adler-32 18 but with weaker
 * detection), and the loader digests each page just after copying it, while it is in cache:
 * read back from memory, the same digest runs at 5–6 GB/s.
 */
public final class RamDigest {

    private static final int PAGE = 4096;
    private static final MemorySegment ZERO_PAGE = Arena.global().allocate(PAGE);
    private static final int ZERO_PAGE_CRC = crc(ZERO_PAGE.asByteBuffer());

    /** A buffer view covers at most this much RAM (a ByteBuffer's capacity is an int). */
    private static final int WINDOW_SHIFT = 30;

    private final int[] crcs;
    // For update: the RAM in windows of 1 GiB, and one CRC32C, reused page after page so that
    // keeping the digest up to date allocates nothing.
    private final ByteBuffer[] windows;
    private final CRC32C crc = new CRC32C();

    private RamDigest(int[] crcs, ByteBuffer[] windows) {
        this.crcs = crcs;
        this.windows = windows;
    }

    /**
     * @param ram a block's RAM, all zero (a fresh destination)
     * @return its digests, which {@link #update} keeps up to date as pages are written; one thread
     *         at a time
     */
    public static RamDigest ofZeroPages(MemorySegment ram) {
        int[] crcs = new int[Math.toIntExact(ram.byteSize() / PAGE)];
        Arrays.fill(crcs, ZERO_PAGE_CRC);
        ByteBuffer[] windows = new ByteBuffer[Math.toIntExact(Math.ceilDiv(ram.byteSize(), 1L << WINDOW_SHIFT))];
        for (int i = 0; i < windows.length; i++) {
            long start = (long) i << WINDOW_SHIFT;
            windows[i] = ram.asSlice(start, Math.min(1L << WINDOW_SHIFT, ram.byteSize() - start)).asByteBuffer();
        }
        return new RamDigest(crcs, windows);
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
                int at = (p - first) * PAGE;
                c.reset();
                c.update(view.limit(at + PAGE).position(at));
                crcs[p] = (int) c.getValue();
            }
        });
        return new RamDigest(crcs, null);
    }

    /**
     * Reads {@code page} of the RAM this digest was made for ({@link #ofZeroPages}) again, as just
     * written.
     */
    public void update(long page) {
        long offset = page * PAGE;
        int at = (int) (offset & ((1L << WINDOW_SHIFT) - 1));
        ByteBuffer window = windows[(int) (offset >>> WINDOW_SHIFT)];
        crc.reset();
        crc.update(window.limit(at + PAGE).position(at));
        crcs[Math.toIntExact(page)] = (int) crc.getValue();
    }

    /** @return the block's digest */
    public int value() {
        ByteBuffer b = ByteBuffer.allocate(crcs.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        b.asIntBuffer().put(crcs);
        CRC32C c = new CRC32C();
        c.update(b);
        return (int) c.getValue();
    }

    private static int crc(ByteBuffer data) {
        CRC32C c = new CRC32C();
        c.update(data);
        return (int) c.getValue();
    }
}
