package dev.ferry.migration.ram;

import dev.ferry.machine.Machine;
import dev.ferry.machine.MachineConfig;
import dev.ferry.machine.soft.SoftAcceleratorProvider;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import dev.ferry.memory.MemfdRamBlock;
import dev.ferry.migration.stream.StreamWriter;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.nio.ByteBuffer;
import java.nio.channels.WritableByteChannel;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * RamSaver's bitmap lock (seed 002): free-page hints from one thread and send bursts from
 * another never lose or double-count a page. With no sync in between, every page is either sent
 * once or dropped once.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class RamSaverHintRaceTest {

    private static final long RAM = 32L << 20;

    /** Swallows everything written, as fast as it can. */
    static final class NullChannel implements WritableByteChannel {
        long bytes;

        @Override
        public int write(ByteBuffer src) {
            int n = src.remaining();
            src.position(src.limit());
            bytes += n;
            return n;
        }

        @Override
        public boolean isOpen() {
            return true;
        }

        @Override
        public void close() {
        }
    }

    @ParameterizedTest
    @EnumSource(RamSaver.LockMode.class)
    void pagesSentPlusPagesDroppedIsAllPages(RamSaver.LockMode mode) throws Exception {
        MachineConfig config = MachineConfig.of(RAM, 1, Workload.of(Pattern.IDLE, 0)).withPreallocate(false);
        try (Machine m = Machine.create(config, new SoftAcceleratorProvider())) {
            MemfdRamBlock block = m.ram();
            // Every third page holds data, so bursts take a while and alternate kinds of page.
            for (long p = 0; p < RAM / 4096; p += 3) {
                block.host().asSlice(p * 4096, 4096).fill((byte) (p | 1));
            }
            long pages = RAM / 4096;
            for (int seed = 0; seed < 3; seed++) {
                RamSaver saver = new RamSaver(m.memory(), m.systemMemory(), 10, mode);
                NullChannel sink = new NullChannel();
                StreamWriter out = new StreamWriter(sink);
                saver.setup(out);
                assertEquals(pages, saver.remainingPages());
                assertEquals(RAM, saver.totalBytes());

                AtomicBoolean stop = new AtomicBoolean();
                AtomicLong dropped = new AtomicLong();
                AtomicLong minRemaining = new AtomicLong(Long.MAX_VALUE);
                AtomicReference<Throwable> failure = new AtomicReference<>();
                long hintSeed = seed;
                Thread hinter = Thread.ofPlatform().start(() -> {
                    Random random = new Random(hintSeed);
                    try {
                        while (!stop.get()) {
                            long offset = random.nextLong(RAM);
                            long length = Math.min(random.nextLong(256 * 4096), RAM - offset);
                            dropped.addAndGet(saver.hintFree(block, offset, length));
                            minRemaining.accumulateAndGet(saver.remainingPages(), Math::min);
                        }
                    } catch (Throwable e) {
                        failure.set(e);
                    }
                });
                long bursts = 0;
                // Short bursts, so that hints get the lock between them.
                while (!saver.sendBurst(out, System.nanoTime() + 100_000, () -> Long.MAX_VALUE)) {
                    out.flush();
                    bursts++;
                    minRemaining.accumulateAndGet(saver.remainingPages(), Math::min);
                }
                out.flush();
                stop.set(true);
                hinter.join();
                assertNull(failure.get(), () -> "the hinter failed: " + failure.get());
                long sent = saver.normalPages() + saver.zeroPages();
                assertEquals(pages, sent + dropped.get(), mode + " seed " + seed + ": sent " + sent + ", dropped "
                        + dropped.get() + " in " + bursts + " bursts");
                assertEquals(0, saver.remainingPages());
                assertTrue(minRemaining.get() >= 0, "remaining went to " + minRemaining.get());
                assertTrue(sink.bytes >= saver.normalPages() * 4096);
                assertTrue(saver.lockAcquisitions() > 0);
                if (mode == RamSaver.LockMode.PER_PAGE) {
                    assertTrue(saver.lockAcquisitions() >= sent, "at least once per page sent");
                }
                // A drained saver stays drained.
                assertTrue(saver.sendBurst(out, Long.MAX_VALUE, () -> Long.MAX_VALUE));
            }
        }
    }

    /** A dirty count that disagrees with the bitmaps stops the send with a reason, not a spin. */
    @ParameterizedTest
    @EnumSource(RamSaver.LockMode.class)
    void aMiscountFailsLoudlyInsteadOfSpinning(RamSaver.LockMode mode) throws Exception {
        MachineConfig config = MachineConfig.of(4L << 20, 1, Workload.of(Pattern.IDLE, 0)).withPreallocate(false);
        try (Machine m = Machine.create(config, new SoftAcceleratorProvider())) {
            RamSaver saver = new RamSaver(m.memory(), m.systemMemory(), 10, mode);
            StreamWriter out = new StreamWriter(new NullChannel());
            saver.setup(out);
            saver.sendBurst(out, System.nanoTime() + 1_000_000, () -> Long.MAX_VALUE); // stop mid-block
            saver.miscountForTest(3);
            while (true) {
                try {
                    if (saver.sendBurst(out, Long.MAX_VALUE, () -> Long.MAX_VALUE)) {
                        throw new AssertionError("a drained saver with a miscount claims it is done");
                    }
                } catch (IllegalStateException e) {
                    assertTrue(e.getMessage().contains("counts 3 dirty pages but its bitmaps hold none"), e.getMessage());
                    return;
                }
            }
        }
    }
}
