package dev.ferry.memory;

import dev.ferry.api.DirtyClient;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * A node of the memory region graph (QEMU's {@code MemoryRegion}): a container of subregions,
 * a RAM region backed by a {@link MemfdRamBlock}, an I/O region served by an {@link IoHandler},
 * or an alias showing part of another region. Regions are made by a {@link MemorySystem} and
 * every change is a transaction of that system: changes made inside an open transaction are
 * seen by listeners once, when the outermost transaction commits.
 */
public final class MemoryRegion {

    enum Kind { CONTAINER, RAM, IO, ALIAS }

    private final MemorySystem owner;
    private final String name;
    private final Kind kind;
    private final long size;
    private final MemfdRamBlock ramBlock;
    private final IoHandler io;
    private final MemoryRegion aliasTarget;
    private long aliasOffset;

    // Placement and state; guarded by the owner's lock.
    private MemoryRegion container;
    private long address;
    private int priority;
    private boolean enabled = true;
    private boolean readOnly;
    private int logMask;
    private final List<MemoryRegion> subregions = new ArrayList<>();

    MemoryRegion(MemorySystem owner, String name, Kind kind, long size, MemfdRamBlock ramBlock, IoHandler io,
                 MemoryRegion aliasTarget, long aliasOffset) {
        this.owner = Objects.requireNonNull(owner);
        this.name = Objects.requireNonNull(name, "name");
        if (size <= 0) {
            throw new IllegalArgumentException("region " + name + ": size must be positive, got " + size);
        }
        this.kind = kind;
        this.size = size;
        this.ramBlock = ramBlock;
        this.io = io;
        this.aliasTarget = aliasTarget;
        this.aliasOffset = aliasOffset;
    }

    MemorySystem owner() {
        return owner;
    }

    /** @return the region's name */
    public String name() {
        return name;
    }

    /** @return the region's size in bytes */
    public long size() {
        return size;
    }

    /** @return the offset of this region within its container */
    public long address() {
        return address;
    }

    /** @return the priority among its container's subregions; higher hides lower */
    public int priority() {
        return priority;
    }

    /** @return whether this is a RAM region */
    public boolean isRam() {
        return kind == Kind.RAM;
    }

    /** @return whether the region maps memory itself (RAM or I/O), rather than through others */
    boolean isTerminal() {
        return kind == Kind.RAM || kind == Kind.IO;
    }

    /** @return the RAM block behind a RAM region, else null */
    public MemfdRamBlock ramBlock() {
        return ramBlock;
    }

    /** Byte offset of the region within its RAM block (regions map whole blocks). */
    long ramOffset() {
        return 0;
    }

    IoHandler io() {
        return io;
    }

    MemoryRegion aliasTarget() {
        return aliasTarget;
    }

    long aliasOffset() {
        return aliasOffset;
    }

    List<MemoryRegion> subregions() {
        return subregions;
    }

    /** @return whether the region is enabled */
    public boolean isEnabled() {
        return enabled;
    }

    /** @return whether guest writes to the region are refused */
    public boolean isReadOnly() {
        return readOnly;
    }

    /** @return the {@link DirtyClient} bits this region logs for, apart from global logging */
    public int logMask() {
        return logMask;
    }

    /** Maps {@code sub} at {@code offset} with priority 0 (QEMU's memory_region_add_subregion). */
    public void addSubregion(long offset, MemoryRegion sub) {
        addSubregionOverlap(offset, sub, 0);
    }

    /**
     * Maps {@code sub} at {@code offset} with a priority: where subregions overlap, the higher
     * priority wins; among equal priorities, the one added last wins (as in QEMU).
     *
     * @throws IllegalArgumentException if this is not a container, or {@code sub} is mapped already
     */
    public void addSubregionOverlap(long offset, MemoryRegion sub, int priority) {
        Objects.requireNonNull(sub, "sub");
        if (kind != Kind.CONTAINER && kind != Kind.RAM && kind != Kind.IO) {
            throw new IllegalArgumentException("alias " + name + " cannot have subregions");
        }
        if (sub.owner != owner) {
            throw new IllegalArgumentException("region " + sub.name + " belongs to another memory system");
        }
        owner.update(() -> {
            if (sub.container != null) {
                throw new IllegalArgumentException("region " + sub.name + " is already mapped in " + sub.container.name);
            }
            for (MemoryRegion up = this; up != null; up = up.container) {
                if (up == sub) {
                    throw new IllegalArgumentException("mapping " + sub.name + " into " + name + " makes a cycle");
                }
            }
            sub.container = this;
            sub.address = offset;
            sub.priority = priority;
            int at = 0;
            while (at < subregions.size() && subregions.get(at).priority > priority) {
                at++;
            }
            subregions.add(at, sub);
        });
    }

    /** Unmaps a subregion (QEMU's memory_region_del_subregion). */
    public void removeSubregion(MemoryRegion sub) {
        owner.update(() -> {
            if (sub.container != this) {
                throw new IllegalArgumentException("region " + sub.name + " is not mapped in " + name);
            }
            subregions.remove(sub);
            sub.container = null;
        });
    }

    /** Enables or disables the region; a disabled region and its subregions map nothing. */
    public void setEnabled(boolean enabled) {
        owner.update(() -> this.enabled = enabled);
    }

    /** Makes the region read-only for the guest, or writable again. */
    public void setReadOnly(boolean readOnly) {
        owner.update(() -> this.readOnly = readOnly);
    }

    /** Moves the region within its container (QEMU's memory_region_set_address). */
    public void setAddress(long address) {
        owner.update(() -> {
            this.address = address;
            if (container != null) {
                // Re-insert to keep "last added wins" among equal priorities, as QEMU does.
                container.subregions.remove(this);
                int at = 0;
                while (at < container.subregions.size() && container.subregions.get(at).priority > priority) {
                    at++;
                }
                container.subregions.add(at, this);
            }
        });
    }

    /** Points an alias at another offset of its target (QEMU's memory_region_set_alias_offset). */
    public void setAliasOffset(long offset) {
        if (kind != Kind.ALIAS) {
            throw new IllegalStateException("region " + name + " is not an alias");
        }
        owner.update(() -> this.aliasOffset = offset);
    }

    /** Starts or stops logging of this RAM region for one client (QEMU's memory_region_set_log). */
    public void setLog(DirtyClient client, boolean log) {
        if (kind != Kind.RAM) {
            throw new IllegalStateException("region " + name + " is not RAM; only RAM is dirty-logged");
        }
        owner.update(() -> logMask = log ? logMask | client.bit() : logMask & ~client.bit());
    }

    @Override
    public String toString() {
        return kind.name().toLowerCase(java.util.Locale.ROOT) + " " + name + " (" + size + " bytes)";
    }
}
