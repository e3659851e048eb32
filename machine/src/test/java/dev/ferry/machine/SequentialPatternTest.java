package dev.ferry.machine;

import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;

import static dev.ferry.machine.Guests.MIB;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The sequential workload checks itself (as QEMU's migration-test guest): once paused, each
 * vCPU's slice holds v+1 on a prefix and v on the rest, mod 256, and the prefix ends where the
 * vCPU's cursor stands.
 */
class SequentialPatternTest {

    @ParameterizedTest(name = "{0} vCPU(s), working set at {1} pages, {2} pages")
    @CsvSource({"1, 0, 0", "3, 0, 0", "4, 17, 1001", "2, 3, 0"})
    void sliceHoldsTwoValuesSplitAtTheCursor(int vcpus, long offsetPages, long sizePages) {
        long ram = 8 * MIB;
        Workload w = Workload.of(Pattern.SEQUENTIAL, 0).withWorkingSet(offsetPages * 4096, sizePages * 4096);
        try (Machine m = Guests.soft(ram, vcpus, w)) {
            m.start();
            for (int round = 0; round < 3; round++) {
                Guests.awaitWrites(m, 5000 + round * 777L);
                m.pause();
                MemorySegment host = m.ram().host();
                long written = 0;
                for (int i = 0; i < vcpus; i++) {
                    long[] slice = w.slice(ram, i, vcpus);
                    long prefix = checkSlice(host, slice[0], slice[1], "vCPU " + i + " round " + round);
                    long position = ByteBuffer.wrap(m.vcpu(i).saveState()).getLong();
                    assertEquals(position, prefix % slice[1], "vCPU " + i + ": the prefix ends at the cursor");
                    written += position;
                }
                // Pages outside the working set are never written.
                for (long p = 0; p < ram / 4096; p++) {
                    long first = offsetPages;
                    long last = first + (sizePages == 0 ? ram / 4096 - offsetPages : sizePages);
                    if (p < first || p >= last) {
                        assertEquals(0, host.get(ValueLayout.JAVA_BYTE, p * 4096), "page " + p + " is outside the working set");
                    }
                }
                assertTrue(m.pagesWritten() >= written);
                m.resume();
            }
            assertTrue(m.vcpuFailure().isEmpty());
        }
    }

    /** @return the length of the v+1 prefix (0 when the slice is uniform) */
    static long checkSlice(MemorySegment host, long first, long count, String who) {
        byte v0 = host.get(ValueLayout.JAVA_BYTE, first * 4096);
        long p = 1;
        while (p < count && host.get(ValueLayout.JAVA_BYTE, (first + p) * 4096) == v0) {
            p++;
        }
        if (p == count) {
            return 0;
        }
        byte rest = host.get(ValueLayout.JAVA_BYTE, (first + p) * 4096);
        if ((byte) (v0 - 1) != rest) {
            fail(who + ": page " + (first + p) + " holds " + rest + " after a prefix of " + v0);
        }
        for (long q = p; q < count; q++) {
            byte b = host.get(ValueLayout.JAVA_BYTE, (first + q) * 4096);
            if (b != rest) {
                fail(who + ": page " + (first + q) + " holds " + b + ", expected " + rest + " (prefix of "
                        + p + " pages holding " + v0 + ")");
            }
        }
        return p;
    }
}
