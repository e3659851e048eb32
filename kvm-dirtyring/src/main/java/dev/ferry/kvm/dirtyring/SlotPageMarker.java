package dev.ferry.kvm.dirtyring;

import dev.ferry.api.DirtyTrackerException;
import dev.ferry.api.RamBlock;
import dev.ferry.kvm.KvmMemslot;
import dev.ferry.kvm.KvmMemslots;

/**
 * Turns ring entries into dirty RAM block pages (QEMU's kvm_dirty_ring_mark_page): the entry's
 * {@code slot} is the address space in the high 16 bits and the slot id in the low 16; the slot
 * table says which RAM block pages the slot maps, and {@code offset} is the page within the slot,
 * so the block page is {@link KvmMemslot#firstPage()} {@code + offset}.
 *
 * <p>Marks are gathered a 64-page word at a time: consecutive entries that fall in the same
 * aligned word of the same block are OR-ed together and handed to the block once, with
 * {@link RamBlock#setDirtyWord} (Ferry's own blocks OR the word in; others take runs of
 * {@link RamBlock#setDirty}). Guests dirty pages in runs more often than not, so a
 * sequential writer costs one bitmap update per 64 entries.
 *
 * <p>An entry that names no slot of the table (another address space, a slot id KVM does not
 * have from us, an offset past the slot's end) cannot be attributed to a page: the marker throws
 * {@link DirtyTrackerException} rather than drop it. Entries for a deleted slot cannot arrive: the
 * accelerator reaps before and right after deleting a logging slot, before its id is reused.
 *
 * <p>Not thread-safe: use under the slot lock, which every reap holds.
 */
public final class SlotPageMarker implements GfnSink {

    private final KvmMemslots slots;
    private KvmMemslot cached;
    private RamBlock block;
    private long wordBase = -1;
    private long bits;
    private long entries;
    private long words;

    /** @param slots the accelerator's slot table */
    public SlotPageMarker(KvmMemslots slots) {
        this.slots = slots;
    }

    @Override
    public void dirty(int slot, long offset) {
        int as = slot >>> 16;
        int id = slot & 0xFFFF;
        if (as != 0) {
            throw new DirtyTrackerException(String.format("kvm-dirtyring: ring entry for address space %d slot %d "
                    + "offset %d, but Ferry only maps address space 0", as, id, offset));
        }
        KvmMemslot s = cached;
        if (s == null || s.id() != id || s.removed()) {
            s = slots.get(id).orElseThrow(() -> new DirtyTrackerException(String.format(
                    "kvm-dirtyring: ring entry for memory slot %d (page %d), which the slot table does not have; "
                    + "the page cannot be attributed to RAM", id, offset)));
            cached = s;
        }
        if (offset < 0 || offset >= s.pages()) {
            throw new DirtyTrackerException(String.format("kvm-dirtyring: ring entry for page %d of %s, which has "
                    + "%d pages", offset, s, s.pages()));
        }
        long page = s.firstPage() + offset;
        RamBlock b = s.ramBlock();
        long base = page & -64L;
        if (b != block || base != wordBase) {
            flush();
            block = b;
            wordBase = base;
        }
        bits |= 1L << (page & 63);
        entries++;
    }

    @Override
    public void flush() {
        if (block != null && bits != 0) {
            block.setDirtyWord(wordBase, bits);
            words++;
        }
        block = null;
        wordBase = -1;
        bits = 0;
    }

    /** @return entries marked since the marker was made */
    public long entries() {
        return entries;
    }

    /** @return word updates handed to RAM blocks since the marker was made */
    public long words() {
        return words;
    }
}
