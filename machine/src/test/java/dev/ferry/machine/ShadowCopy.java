package dev.ferry.machine;

import dev.ferry.api.DirtyClient;
import dev.ferry.memory.DirtyBitmap;
import dev.ferry.memory.MemfdRamBlock;
import dev.ferry.memory.MemorySystem;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

/**
 * A migration destination in miniature: a copy of every RAM block, taken whole when created
 * (the bulk stage, so create it right after dirty logging starts), then brought up to date by
 * copying only the pages each sync reports. After the guest stops and a final sync, the copy
 * equals RAM exactly if and only if the trackers reported every page whose content changed:
 * the no-false-negative property, as migration depends on it.
 */
public final class ShadowCopy implements AutoCloseable {

    private final MemorySystem memory;
    private final List<MemfdRamBlock> blocks;
    private final List<MemorySegment> shadows = new ArrayList<>();
    private final List<DirtyBitmap> scratch = new ArrayList<>();
    private final Arena arena = Arena.ofShared();
    private long syncs;
    private long pagesCopied;

    public ShadowCopy(MemorySystem memory) {
        if (!memory.globalDirtyLog()) {
            throw new IllegalStateException("start dirty logging before taking the bulk copy");
        }
        this.memory = memory;
        this.blocks = memory.ramBlocks();
        for (MemfdRamBlock b : blocks) {
            MemorySegment s = arena.allocate(b.size(), 4096);
            MemorySegment.copy(b.host(), 0, s, 0, b.size());
            shadows.add(s);
            scratch.add(new DirtyBitmap(b.pages()));
        }
    }

    /**
     * Syncs the dirty log, drains each block's migration bitmap and copies the pages it names.
     *
     * @return the number of pages copied
     */
    public long sync(boolean lastStage) {
        memory.globalDirtyLogSync(lastStage);
        long n = 0;
        for (int i = 0; i < blocks.size(); i++) {
            MemfdRamBlock b = blocks.get(i);
            DirtyBitmap d = scratch.get(i);
            b.syncDirtyBitmap(d);
            int ps = b.pageSize();
            for (long p = d.nextSetBit(0); p >= 0; p = d.nextSetBit(p + 1)) {
                MemorySegment.copy(b.host(), p * ps, shadows.get(i), p * ps, ps);
                n++;
            }
            d.clearAll();
        }
        syncs++;
        pagesCopied += n;
        return n;
    }

    /** @return pages copied by all syncs so far */
    public long pagesCopied() {
        return pagesCopied;
    }

    /** @return syncs made */
    public long syncs() {
        return syncs;
    }

    /** @return null if the copy equals RAM, else a description of the differences */
    public String differences() {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < blocks.size(); i++) {
            MemfdRamBlock b = blocks.get(i);
            MemorySegment host = b.host();
            MemorySegment shadow = shadows.get(i);
            int ps = b.pageSize();
            long bad = 0;
            List<Long> first = new ArrayList<>();
            long at = 0;
            while (at < b.size()) {
                long m = host.asSlice(at).mismatch(shadow.asSlice(at));
                if (m < 0) {
                    break;
                }
                long page = (at + m) / ps;
                bad++;
                if (first.size() < 10) {
                    first.add(page);
                }
                at = (page + 1) * ps;
            }
            if (bad > 0) {
                sb.append(b.name()).append(": ").append(bad).append(" of ").append(b.pages())
                        .append(" pages differ, never reported; first: ").append(first).append("; ");
            }
        }
        return sb.isEmpty() ? null : sb.toString();
    }

    /** @return whether any page of RAM differs from the copy right now (before syncing) */
    public boolean ramDiffers() {
        for (int i = 0; i < blocks.size(); i++) {
            if (blocks.get(i).host().mismatch(shadows.get(i)) >= 0) {
                return true;
            }
        }
        return false;
    }

    @Override
    public void close() {
        arena.close();
    }
}
