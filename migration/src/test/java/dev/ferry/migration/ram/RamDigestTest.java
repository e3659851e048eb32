package dev.ferry.migration.ram;

import dev.ferry.memory.MemfdRamBlock;
import org.junit.jupiter.api.Test;

import java.lang.foreign.ValueLayout;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

/** The destination's digest, kept page by page as pages arrive, against one taken of the whole RAM. */
class RamDigestTest {

    @Test
    void keptUpToDatePageByPageItEqualsTheDigestOfTheContents() {
        try (MemfdRamBlock ram = MemfdRamBlock.allocate("digest-test", 2 << 20)) {
            RamDigest kept = RamDigest.ofZeroPages(ram.host());
            assertEquals(RamDigest.of(ram).value(), kept.value(), "a fresh block is all zero pages");
            Random rnd = new Random(14);
            for (int i = 0; i < 200; i++) {
                long page = rnd.nextInt((int) (ram.size() / 4096));
                ram.host().set(ValueLayout.JAVA_LONG_UNALIGNED, page * 4096 + rnd.nextInt(4089), rnd.nextLong());
                kept.update(page);
            }
            assertEquals(RamDigest.of(ram).value(), kept.value());
            // A write the digest was not told of is a different digest.
            ram.host().set(ValueLayout.JAVA_BYTE, 4096 * 7 + 5, (byte) 0x77);
            assertNotEquals(RamDigest.of(ram).value(), kept.value());
            kept.update(7);
            assertEquals(RamDigest.of(ram).value(), kept.value());
        }
    }
}
