package dev.ferry.migration.ram;

import dev.ferry.memory.MemfdRamBlock;
import dev.ferry.migration.stream.QemuFormat;
import dev.ferry.migration.stream.StreamException;
import dev.ferry.migration.stream.StreamReader;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The destination side of RAM migration (QEMU's ram_load): checks the source's block list
 * against this machine's, and writes each page where it belongs. Every offset, flag and name
 * from the stream is checked before it is used; a bad one rejects the stream. The digest of
 * each page is updated as the page is written, so the RAM digest at switchover is cheap.
 */
public final class RamLoader {

    /**
     * A block, the digest of what has been loaded into it, and which of its pages hold data: a
     * page outside that set is zero (a fresh destination's RAM is), so a zero page for it costs
     * nothing. Reading it to check, as QEMU's ram_handle_zero does, would fault every page of the
     * guest in (a memfd allocates on a read fault) in the middle of the load.
     */
    private record Target(MemfdRamBlock block, RamDigest digest, java.util.BitSet written) {
    }

    private final Map<String, Target> blocks = new LinkedHashMap<>();
    private boolean setupDone;
    private long pagesLoaded;

    /**
     * @param ramBlocks the destination's RAM blocks, zero but for...
     * @param prewritten ...the bytes at the start of a block (by name) the machine wrote before
     *                   loading: the accelerator's reserved area, where kvm puts its guest code
     */
    public RamLoader(List<MemfdRamBlock> ramBlocks, Map<String, Long> prewritten) {
        for (MemfdRamBlock b : ramBlocks) {
            // A fresh destination's RAM is zeros (preallocation does not change that) except
            // what the machine wrote itself: those pages are read before a zero page skips them.
            java.util.BitSet written = new java.util.BitSet();
            RamDigest digest = RamDigest.ofZeroPages(b.host());
            int pages = Math.toIntExact(Math.ceilDiv(Math.min(b.size(), prewritten.getOrDefault(b.name(), 0L)),
                    b.pageSize()));
            written.set(0, pages);
            for (int p = 0; p < pages; p++) {
                digest.update(p);
            }
            blocks.put(b.name(), new Target(b, digest, written));
        }
    }

    /** @return pages written so far */
    public long pagesLoaded() {
        return pagesLoaded;
    }

    /** @return the digest of each block as loaded, by name */
    public Map<String, Integer> digests() {
        Map<String, Integer> out = new LinkedHashMap<>();
        blocks.forEach((name, t) -> out.put(name, t.digest().value()));
        return out;
    }

    /** Reads one part of the RAM section, up to its EOS. */
    public void load(StreamReader in) throws IOException {
        Target target = null;
        while (true) {
            long at = in.offset();
            long header = in.get64();
            int pageSize = 4096;
            int flags = (int) (header & (pageSize - 1));
            long addr = header & ~(long) (pageSize - 1);
            if ((flags & QemuFormat.RAM_FLAG_MEM_SIZE) != 0) {
                if (setupDone) {
                    throw new StreamException(at, "RAM block list sent twice");
                }
                loadBlockList(in, addr, at);
                setupDone = true;
                flags &= ~QemuFormat.RAM_FLAG_MEM_SIZE;
            }
            if ((flags & (QemuFormat.RAM_FLAG_ZERO | QemuFormat.RAM_FLAG_PAGE)) != 0) {
                if ((flags & QemuFormat.RAM_FLAG_ZERO) != 0 && (flags & QemuFormat.RAM_FLAG_PAGE) != 0) {
                    // No page is both (QEMU: "Unknown combination of migration flags").
                    throw new StreamException(at, "unknown RAM flags 0x" + Integer.toHexString(flags)
                            + ": a page cannot be both zero and full");
                }
                if (!setupDone) {
                    throw new StreamException(at, "RAM page before the RAM block list");
                }
                if ((flags & QemuFormat.RAM_FLAG_CONTINUE) != 0) {
                    if (target == null) {
                        throw new StreamException(at, "RAM page continues no block");
                    }
                } else {
                    String name = in.getString8();
                    target = blocks.get(name);
                    if (target == null) {
                        throw in.error("page for unknown RAM block '" + name + "'");
                    }
                }
                MemfdRamBlock current = target.block();
                // addr comes from the stream: it may be negative or near Long.MAX_VALUE, where
                // addr + pageSize would overflow past the check.
                if (addr < 0 || addr > current.size() - current.pageSize()) {
                    throw new StreamException(at, String.format(
                            "page offset 0x%x outside RAM block %s of 0x%x bytes", addr, current.name(), current.size()));
                }
                int index = (int) (addr / current.pageSize());
                if ((flags & QemuFormat.RAM_FLAG_ZERO) != 0) {
                    int fill = in.get8();
                    // As ram_handle_zero: leave a page that is already zero untouched.
                    if (fill != 0 || target.written().get(index)) {
                        current.host().asSlice(addr, current.pageSize()).fill((byte) fill);
                        target.written().set(index, fill != 0);
                        target.digest().update(index);
                    }
                } else {
                    // Into the block at the page's offset, not through a slice of it: a page
                    // costs no allocation.
                    in.getInto(current.host(), addr, current.pageSize());
                    target.written().set(index);
                    target.digest().update(index);
                }
                pagesLoaded++;
                flags &= ~(QemuFormat.RAM_FLAG_ZERO | QemuFormat.RAM_FLAG_PAGE | QemuFormat.RAM_FLAG_CONTINUE);
            }
            if ((flags & QemuFormat.RAM_FLAG_EOS) != 0) {
                flags &= ~QemuFormat.RAM_FLAG_EOS;
                if (flags != 0) {
                    throw new StreamException(at, "unknown RAM flags 0x" + Integer.toHexString(flags));
                }
                return;
            }
            if (flags != 0) {
                throw new StreamException(at, "unknown RAM flags 0x" + Integer.toHexString(flags));
            }
        }
    }

    private void loadBlockList(StreamReader in, long total, long at) throws IOException {
        long expected = 0;
        for (Target t : blocks.values()) {
            expected += t.block().size();
        }
        if (total != expected) {
            throw new StreamException(at, "source has " + total
                    + " bytes of RAM, this machine " + expected);
        }
        long left = total;
        int seen = 0;
        while (left > 0) {
            String name = in.getString8();
            long size = in.get64();
            Target t = blocks.get(name);
            if (t == null) {
                throw in.error("unknown RAM block '" + name + "'");
            }
            if (size != t.block().size()) {
                throw in.error("RAM block " + name + " has " + size + " bytes on the source, " + t.block().size()
                        + " here");
            }
            if (++seen > blocks.size()) {
                throw in.error("RAM block list is longer than this machine's");
            }
            left -= size;
        }
    }
}
