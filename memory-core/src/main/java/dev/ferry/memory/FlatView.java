package dev.ferry.memory;

import dev.ferry.api.DirtyClient;
import dev.ferry.api.MemorySection;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The memory of an address space as the guest sees it: a sorted list of non-overlapping ranges,
 * each mapping to one RAM or I/O region (QEMU's {@code FlatView}). Immutable; each committed
 * transaction renders a new one. Lookups are a binary search.
 */
public final class FlatView {

    private final String addressSpace;
    private final FlatRange[] ranges;
    private final long[] starts;
    private final List<MemorySection> sections;

    private FlatView(String addressSpace, List<FlatRange> ranges) {
        this.addressSpace = addressSpace;
        this.ranges = ranges.toArray(FlatRange[]::new);
        this.starts = new long[this.ranges.length];
        List<MemorySection> list = new ArrayList<>(this.ranges.length);
        for (int i = 0; i < this.ranges.length; i++) {
            starts[i] = this.ranges[i].address();
            list.add(this.ranges[i].toSection(addressSpace));
        }
        this.sections = List.copyOf(list);
    }

    static FlatView empty(String addressSpace) {
        return new FlatView(addressSpace, List.of());
    }

    /**
     * Renders a region graph (QEMU's {@code generate_memory_topology}): subregions in priority
     * order claim address ranges first, lower ones fill only the gaps, then adjacent ranges of the
     * same region are merged.
     */
    static FlatView render(String addressSpace, MemoryRegion root, boolean globalDirtyLog) {
        List<FlatRange> out = new ArrayList<>();
        if (root != null) {
            renderRegion(out, root, 0, 0, root.size(), false, globalDirtyLog);
        }
        return new FlatView(addressSpace, simplify(out));
    }

    /**
     * @param base        guest address of offset 0 of {@code mr}
     * @param clipStart   start of the window that {@code mr} may fill
     * @param clipEnd     end of that window
     */
    private static void renderRegion(List<FlatRange> out, MemoryRegion mr, long base, long clipStart, long clipEnd,
                                     boolean readOnly, boolean globalDirtyLog) {
        if (!mr.isEnabled()) {
            return;
        }
        long start = Math.max(base, clipStart);
        // Saturate: a region as big as the address space (the system container) must not wrap.
        long regionEnd = base > Long.MAX_VALUE - mr.size() ? Long.MAX_VALUE : base + mr.size();
        long end = Math.min(regionEnd, clipEnd);
        if (start >= end) {
            return;
        }
        readOnly |= mr.isReadOnly();
        if (mr.aliasTarget() != null) {
            renderRegion(out, mr.aliasTarget(), base - mr.aliasOffset(), start, end, readOnly, globalDirtyLog);
            return;
        }
        for (MemoryRegion sub : mr.subregions()) {
            renderRegion(out, sub, base + sub.address(), start, end, readOnly, globalDirtyLog);
        }
        if (!mr.isTerminal()) {
            return;
        }
        int mask = mr.logMask() | (globalDirtyLog && mr.isRam() ? DirtyClient.MIGRATION.bit() : 0);
        long addr = start;
        // Fill the gaps the higher-priority subregions left, in address order.
        for (int i = 0; i < out.size() && addr < end; i++) {
            FlatRange fr = out.get(i);
            if (addr >= fr.end()) {
                continue;
            }
            if (addr < fr.address()) {
                long now = Math.min(end, fr.address()) - addr;
                out.add(i, new FlatRange(mr, addr, now, addr - base, readOnly, mask));
                i++;
                addr += now;
            }
            addr = Math.max(addr, Math.min(end, fr.end()));
        }
        if (addr < end) {
            // The loop only ends early once it filled up to end: what is left follows every range.
            out.add(new FlatRange(mr, addr, end - addr, addr - base, readOnly, mask));
        }
    }

    /**
     * What {@link #render} would map at {@code address}, found by walking the region graph
     * instead of rendering it (QEMU's address_space_translate, without a flat view): how a
     * device reads guest memory in the middle of a batched load, where the topology it sees has
     * not been rendered yet. The same rules as the render apply: subregions in priority order,
     * then the terminal region itself in the gaps they leave.
     *
     * @return a range starting at {@code address} that maps to one region for its whole length
     *         (possibly shorter than the render's range, never longer), or null if nothing is mapped
     */
    static FlatRange resolve(MemoryRegion root, long address) {
        return root == null ? null : resolve(root, 0, 0, root.size(), false, address, new long[1]);
    }

    /**
     * @param next on a miss, set to the lowest address above {@code address} where this region
     *             may map something (conservatively low), so that a lower-priority hit stops there
     */
    private static FlatRange resolve(MemoryRegion mr, long base, long clipStart, long clipEnd, boolean readOnly,
                                     long address, long[] next) {
        next[0] = Long.MAX_VALUE;
        if (!mr.isEnabled()) {
            return null;
        }
        long start = Math.max(base, clipStart);
        long regionEnd = base > Long.MAX_VALUE - mr.size() ? Long.MAX_VALUE : base + mr.size();
        long end = Math.min(regionEnd, clipEnd);
        if (start >= end || address >= end) {
            return null;
        }
        if (address < start) {
            next[0] = start;
            return null;
        }
        readOnly |= mr.isReadOnly();
        if (mr.aliasTarget() != null) {
            return resolve(mr.aliasTarget(), base - mr.aliasOffset(), start, end, readOnly, address, next);
        }
        // Subregions of higher priority that miss the address may still claim from some point
        // after it: a lower-priority hit ends there at the latest.
        long limit = end;
        for (MemoryRegion sub : mr.subregions()) {
            FlatRange hit = resolve(sub, base + sub.address(), start, end, readOnly, address, next);
            if (hit != null) {
                return hit.end() > limit ? new FlatRange(hit.region(), address, limit - address,
                        hit.offsetInRegion(), hit.readOnly(), 0) : hit;
            }
            limit = Math.min(limit, next[0]);
        }
        if (!mr.isTerminal()) {
            next[0] = limit < end ? limit : Long.MAX_VALUE;
            return null;
        }
        return new FlatRange(mr, address, limit - address, address - base, readOnly, 0);
    }

    private static List<FlatRange> simplify(List<FlatRange> in) {
        List<FlatRange> out = new ArrayList<>(in.size());
        for (FlatRange fr : in) {
            int last = out.size() - 1;
            if (last >= 0 && out.get(last).canMerge(fr)) {
                FlatRange prev = out.get(last);
                out.set(last, new FlatRange(prev.region(), prev.address(), prev.size() + fr.size(),
                        prev.offsetInRegion(), prev.readOnly(), prev.dirtyLogMask()));
            } else {
                out.add(fr);
            }
        }
        return out;
    }

    /** @return the name of the address space this view belongs to */
    public String addressSpace() {
        return addressSpace;
    }

    /** @return the view's sections in address order */
    public List<MemorySection> sections() {
        return sections;
    }

    FlatRange[] ranges() {
        return ranges;
    }

    /** @return the index of the range holding {@code address}, or -1 */
    int indexOf(long address) {
        int i = Arrays.binarySearch(starts, address);
        if (i < 0) {
            i = -i - 2;
        }
        return i >= 0 && address < ranges[i].end() ? i : -1;
    }

    FlatRange range(int index) {
        return ranges[index];
    }

    /** @return the section holding {@code address}, or null if nothing is mapped there */
    public MemorySection lookup(long address) {
        int i = indexOf(address);
        return i < 0 ? null : sections.get(i);
    }

    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder("FlatView " + addressSpace + "\n");
        for (MemorySection s : sections) {
            sb.append("  ").append(s).append('\n');
        }
        return sb.toString();
    }
}
