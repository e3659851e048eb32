package dev.ferry.machine;

import dev.ferry.machine.workload.PageCursor;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.util.Random;

import static dev.ferry.machine.Guests.MIB;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** vCPU state: the page cursor's save/restore, and a soft vCPU carried to another machine. */
class VcpuStateTest {

    @ParameterizedTest
    @EnumSource(value = Pattern.class, names = {"SEQUENTIAL", "RANDOM", "HOTCOLD"})
    void cursorContinuesWhereItWasSaved(Pattern pattern) {
        Random rnd = new Random(pattern.ordinal() + 11);
        Workload w = new Workload(pattern, 0, 0, 0, 4096, 0.25, 0.8, rnd.nextLong());
        long first = 100;
        long count = 1000;
        PageCursor a = new PageCursor(w, first, count, 2);
        for (int i = rnd.nextInt(5000); i > 0; i--) {
            long p = a.next();
            assertTrue(p >= first && p < first + count, "page " + p + " outside the slice");
        }
        PageCursor b = new PageCursor(w, first, count, 2);
        b.restore(a.state());
        for (int i = 0; i < 3000; i++) {
            assertEquals(a.next(), b.next(), "step " + i);
        }
        assertArrayEquals(a.state(), b.state());
    }

    @Test
    void cursorsOfDifferentVcpusDiffer() {
        Workload w = Workload.of(Pattern.RANDOM, 0);
        PageCursor a = new PageCursor(w, 0, 1 << 20, 0);
        PageCursor b = new PageCursor(w, 0, 1 << 20, 1);
        assertNotEquals(a.next(), b.next());
    }

    @Test
    void hotColdWritesMostlyTheHotPart() {
        Workload w = new Workload(Pattern.HOTCOLD, 0, 0, 0, 4096, 0.1, 0.9, 5);
        PageCursor c = new PageCursor(w, 1000, 10_000, 0);
        int hot = 0;
        int n = 100_000;
        for (int i = 0; i < n; i++) {
            long p = c.next();
            assertTrue(p >= 1000 && p < 11_000);
            if (p < 2000) {
                hot++;
            }
        }
        // 90% go to the hot tenth, plus the cold writes that could not land there: ~90%.
        assertTrue(hot > n * 0.85 && hot < n * 0.95, "hot share " + hot + " of " + n);
    }

    @Test
    void cursorRefusesBadState() {
        PageCursor c = new PageCursor(Workload.of(Pattern.SEQUENTIAL, 0), 0, 10, 0);
        assertThrows(IllegalArgumentException.class, () -> c.restore(new long[]{1}));
        assertThrows(IllegalArgumentException.class, () -> c.restore(new long[]{10, 1}));
        assertThrows(IllegalArgumentException.class, () -> c.restore(new long[]{-1, 1}));
        assertThrows(IllegalArgumentException.class, () -> c.restore(new long[]{0, 0}));
    }

    @Test
    void softVcpuStateRoundTripsAndRefusesGarbage() {
        Workload w = Guests.workload(Pattern.RANDOM, 0, 4096, 9);
        try (Machine a = Guests.soft(4 * MIB, 2, w); Machine b = Guests.soft(4 * MIB, 2, w)) {
            a.start();
            Guests.awaitWrites(a, 1000);
            a.pause();
            for (int i = 0; i < 2; i++) {
                byte[] s = a.vcpu(i).saveState();
                b.vcpu(i).loadState(s);
                assertArrayEquals(s, b.vcpu(i).saveState());
            }
            assertThrows(IllegalArgumentException.class, () -> b.vcpu(0).loadState(new byte[23]));
            assertThrows(IllegalArgumentException.class, () -> b.vcpu(0).loadState(new byte[24]), "random state 0");
        }
    }

    /**
     * A migration of the sequential guest in miniature: RAM and vCPU state carried to a second
     * machine, which runs on; its RAM must still check out. A cursor that restarted at zero
     * would leave three values in the slice.
     */
    @Test
    void sequentialGuestRunsOnAfterItsStateMoved() {
        long ram = 4 * MIB;
        Workload w = Workload.of(Pattern.SEQUENTIAL, 0);
        try (Machine a = Guests.soft(ram, 1, w); Machine b = Guests.soft(ram, 1, w)) {
            a.start();
            long position = 0;
            for (int tries = 0; tries < 50 && position == 0; tries++) {
                a.resume();
                Guests.awaitWrites(a, 3000);
                a.pause();
                position = ByteBuffer.wrap(a.vcpu(0).saveState()).getLong();
            }
            assertNotEquals(0, position, "the cursor stayed at a lap boundary");
            MemorySegment.copy(a.ram().host(), 0, b.ram().host(), 0, ram);
            b.vcpu(0).loadState(a.vcpu(0).saveState());
            b.start();
            Guests.awaitWrites(b, 3000);
            b.pause();
            long prefix = SequentialPatternTest.checkSlice(b.ram().host(), 0, ram / 4096, "destination");
            assertEquals(ByteBuffer.wrap(b.vcpu(0).saveState()).getLong(), prefix);
        }
    }
}
