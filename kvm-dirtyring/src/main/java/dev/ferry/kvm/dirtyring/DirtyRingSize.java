package dev.ferry.kvm.dirtyring;

import dev.ferry.api.Options;
import dev.ferry.kvm.KvmAcceleratorProperties;

/**
 * The {@value #OPTION} option: entries per vCPU ring.
 *
 * <p>Valid: a power of two (the kernel indexes the ring with {@code index & (size - 1)}) of at
 * least {@value #MIN} entries (QEMU's lower bound; smaller rings leave almost nothing between
 * KVM's reserved entries and the soft limit) and at most what KVM allows: KVM_CAP_DIRTY_LOG_RING's
 * byte limit / 16 bytes per struct kvm_dirty_gfn where the host can be asked, else the kernel's
 * KVM_DIRTY_RING_MAX_ENTRIES ({@value #KERNEL_MAX}); the accelerator checks the host's limit
 * again when it creates the VM.
 *
 * <p>Default {@value #DEFAULT} entries (64 KiB per vCPU). QEMU's own default is 0, dirty ring off,
 * because with it off the bitmap is used; here the ring is what was asked for, so a size must be
 * chosen. 4096 because: KVM keeps 64 entries plus the CPU's log buffer (512 with Intel PML) in
 * reserve below the ring's end, so 1024 entries leave only 448 usable; one vCPU on this host
 * family dirties at most about 0.6-0.9 GiB/s, about 2,300 new pages per 10 ms reaper period, which
 * 4096 entries (3,520 usable) absorb with the half-full kick to spare, where 1024 would fill
 * between two periods; and larger rings only make each full-ring harvest longer (65,536 entries
 * take about 2 ms to harvest in Java) without helping a reaper that keeps up.
 */
public final class DirtyRingSize {

    /** The option's name, as the accelerator property it becomes. */
    public static final String OPTION = KvmAcceleratorProperties.DIRTY_RING_SIZE;
    /** Default entries per vCPU. */
    public static final int DEFAULT = 4096;
    /** Fewest entries accepted. */
    public static final int MIN = KvmAcceleratorProperties.MIN_DIRTY_RING_ENTRIES;
    /** KVM_DIRTY_RING_MAX_ENTRIES: the most entries any kernel accepts. */
    public static final int KERNEL_MAX = 65536;
    /** Bytes of one struct kvm_dirty_gfn. */
    public static final int GFN_BYTES = 16;

    private DirtyRingSize() {
    }

    /**
     * @param hostMaxBytes the host's KVM_CAP_DIRTY_LOG_RING(_ACQ_REL) value, 0 if unknown
     * @return the largest ring accepted, in entries
     */
    public static int maxEntries(int hostMaxBytes) {
        if (hostMaxBytes <= 0) {
            return KERNEL_MAX;
        }
        return Math.min(KERNEL_MAX, Integer.highestOneBit(hostMaxBytes / GFN_BYTES));
    }

    /**
     * @param options      the tracker's options
     * @param hostMaxBytes the host's ring limit in bytes, 0 if unknown
     * @return the entries per vCPU: the option's value, or {@value #DEFAULT}
     * @throws IllegalArgumentException with one line stating the valid range
     */
    public static int parse(Options options, int hostMaxBytes) {
        int max = maxEntries(hostMaxBytes);
        String raw = options.get(OPTION).orElse(null);
        if (raw == null) {
            if (DEFAULT > max) {
                throw new IllegalArgumentException("this host's KVM allows dirty rings of at most " + max
                        + " entries per vCPU, below the default " + DEFAULT + "; give " + OPTION + " from " + MIN
                        + " to " + max);
            }
            return DEFAULT;
        }
        long value;
        try {
            value = Long.parseLong(raw.trim());
        } catch (NumberFormatException e) {
            throw outOfRange(max, "'" + raw + "'");
        }
        if (value < MIN || value > max || Long.bitCount(value) != 1) {
            throw outOfRange(max, raw.trim());
        }
        return (int) value;
    }

    private static IllegalArgumentException outOfRange(int max, String got) {
        return new IllegalArgumentException(OPTION + " must be a power of two from " + MIN + " to " + max
                + " entries per vCPU, got " + got);
    }
}
