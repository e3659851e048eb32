package dev.ferry.machine.soft;

import dev.ferry.machine.VcpuControl;
import dev.ferry.machine.VcpuLoop;
import dev.ferry.machine.VcpuSetup;
import dev.ferry.machine.workload.PageCursor;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.memory.MemfdRamBlock;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;

/** A software vCPU: writes its workload's pages straight into guest RAM, then logs them. */
final class SoftVcpu implements VcpuLoop {

    /** Pages written between checkpoints; small enough that pausing and pacing stay prompt. */
    private static final int BATCH = 16;

    private final SoftAccelerator accelerator;
    private final int index;
    private final VcpuSetup setup;
    private final PageCursor cursor;
    private long writes;

    SoftVcpu(SoftAccelerator accelerator, int index, VcpuSetup setup) {
        this.accelerator = accelerator;
        this.index = index;
        this.setup = setup;
        this.cursor = new PageCursor(setup.workload(), setup.firstPage(), setup.pageCount(), index);
    }

    @Override
    public void run(VcpuControl control) {
        MemfdRamBlock ram = setup.ram();
        MemorySegment host = ram.host();
        int pageSize = ram.pageSize();
        int writeSize = setup.workload().writeSize();
        boolean sequential = setup.workload().pattern() == Pattern.SEQUENTIAL;
        if (setup.workload().pattern() == Pattern.IDLE) {
            // An idle guest: no writes, but still at a checkpoint often enough to pause promptly.
            do {
                java.util.concurrent.locks.LockSupport.parkNanos(1_000_000L);
            } while (control.checkpoint(0));
            return;
        }
        SoftMemslot slot = null;
        do {
            for (int i = 0; i < BATCH; i++) {
                long page = cursor.next();
                if (slot == null || slot.retired() || !slot.contains(page)) {
                    slot = accelerator.find(ram, page);
                    if (slot == null) {
                        continue; // the page is not mapped right now: the write goes nowhere
                    }
                }
                long offset = page * pageSize;
                if (sequential) {
                    host.set(ValueLayout.JAVA_BYTE, offset, (byte) (host.get(ValueLayout.JAVA_BYTE, offset) + 1));
                } else {
                    host.asSlice(offset, writeSize).fill((byte) ++writes);
                }
                slot.markWritten(page);
            }
        } while (control.checkpoint(BATCH));
    }

    @Override
    public int stateBytes() {
        return 24;
    }

    @Override
    public byte[] saveState() {
        long[] state = cursor.state();
        return ByteBuffer.allocate(stateBytes()).putLong(state[0]).putLong(state[1]).putLong(writes).array();
    }

    @Override
    public void loadState(byte[] state) {
        if (state.length != stateBytes()) {
            throw new IllegalArgumentException("soft vCPU " + index + ": state of " + state.length
                    + " bytes, expected 24");
        }
        ByteBuffer b = ByteBuffer.wrap(state);
        cursor.restore(new long[]{b.getLong(), b.getLong()});
        writes = b.getLong();
    }
}
