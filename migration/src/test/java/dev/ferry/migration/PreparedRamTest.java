package dev.ferry.migration;

import dev.ferry.machine.Machine;
import dev.ferry.machine.MemoryBackend;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.migration.TestSupport.ChunkedChannel;
import dev.ferry.migration.TestSupport.ReadConnection;
import dev.ferry.migration.bootstrap.TrackedMachine;
import dev.ferry.migration.stream.StreamException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;

import static dev.ferry.migration.TestSupport.MIB;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A destination told its guest's RAM size beforehand (QEMU's destination started with {@code -m}):
 * it makes and faults in the RAM while it waits, the stream loads into it, a stream for another
 * size is refused, and after a failed attempt the RAM is made again for the next.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class PreparedRamTest {

    private static Incoming preallocatingDestination() {
        return TestSupport.bootstrap().incoming(64 * MIB, true, Incoming.DeviceLoad.BATCHED);
    }

    private static Incoming.Result receive(Incoming incoming, byte[] stream) throws Exception {
        return incoming.receive(new ReadConnection(new ChunkedChannel(stream, stream.length, 0, 0), null));
    }

    @Test
    void aRunningGuestMigratesIntoRamMadeBeforehand() throws Exception {
        Incoming incoming = preallocatingDestination();
        try (TrackedMachine src = TestSupport.guest(16 * MIB, 2, TestSupport.workload(Pattern.RANDOM, 20, 3))) {
            MemoryBackend ram = incoming.prepareRam(16 * MIB);
            assertTrue(ram.awaitPreallocation(30_000), "16 MiB faulted in while waiting");
            src.machine().start();
            LoopbackMigration.Outcome o = LoopbackMigration.run(src, TestSupport.params(), incoming, s -> {
            });
            assertEquals(MigrationStatus.COMPLETED, o.stats().status(), o.stats().error());
            assertFalse(incoming.ramPrepared(), "the destination's machine took the RAM");
            incoming.close(); // the machine owns its RAM now: closing the destination side leaves it
            try (Machine dst = o.destination().orElseThrow().machine()) {
                assertTrue(o.destination().get().verified(), "the source confirmed the digests");
                assertEquals(16 * MIB, dst.ram().size());
                long written = dst.pagesWritten();
                Thread.sleep(200);
                assertTrue(dst.pagesWritten() > written, "the guest runs at the destination");
            }
        } finally {
            incoming.close();
        }
    }

    @Test
    void aStreamForAnotherSizeIsRefusedAndThePreparedRamWaitsForTheNext() throws Exception {
        try (Incoming incoming = preallocatingDestination()) {
            incoming.prepareRam(4 * MIB);
            StreamException e = assertThrows(StreamException.class, () -> receive(incoming, StreamBuilder.valid()));
            assertTrue(e.getMessage().contains("the source guest has 2 MiB of RAM, and this destination was started "
                    + "for a guest of 4 MiB (incoming --mem)"), e.getMessage());
            assertTrue(incoming.ramPrepared(), "nothing took the RAM");
        }
        try (Incoming incoming = preallocatingDestination()) {
            incoming.prepareRam(StreamBuilder.RAM);
            try (Machine m = receive(incoming, StreamBuilder.valid()).machine()) {
                assertEquals((byte) 0x5a, m.ram().host().get(ValueLayout.JAVA_BYTE, 4095));
                assertEquals(0, m.ram().host().get(ValueLayout.JAVA_BYTE, 4096));
            }
        }
    }

    @Test
    void afterAFailedAttemptTheRamIsMadeAgainForTheNext() throws Exception {
        try (Incoming incoming = preallocatingDestination()) {
            incoming.prepareRam(StreamBuilder.RAM);
            byte[] valid = StreamBuilder.valid();
            // Cut after the configuration and some RAM: the machine was built on the prepared RAM.
            assertThrows(StreamException.class, () -> receive(incoming, Arrays.copyOf(valid, valid.length / 2)));
            assertTrue(incoming.ramPrepared(), "RAM made again after the failed attempt");
            try (Machine m = receive(incoming, valid).machine()) {
                assertEquals((byte) 0x5a, m.ram().host().get(ValueLayout.JAVA_BYTE, 0));
            }
            assertFalse(incoming.ramPrepared());
        }
    }

    @Test
    void ramIsPreparedOnceAndWithinWhatTheDestinationAccepts() {
        try (Incoming incoming = preallocatingDestination()) {
            IllegalArgumentException big = assertThrows(IllegalArgumentException.class,
                    () -> incoming.prepareRam(128 * MIB));
            assertTrue(big.getMessage().contains("more than this destination accepts"), big.getMessage());
            incoming.prepareRam(2 * MIB);
            IllegalArgumentException twice = assertThrows(IllegalArgumentException.class,
                    () -> incoming.prepareRam(2 * MIB));
            assertTrue(twice.getMessage().contains("prepared already"), twice.getMessage());
        }
    }
}
