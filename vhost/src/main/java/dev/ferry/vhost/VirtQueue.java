package dev.ferry.vhost;

import dev.ferry.api.GuestRange;

/**
 * One split virtqueue as its backend sees it: where the used ring lies in guest memory and,
 * for a queue the backend writes data into (a net rx queue, a blk queue), the guest buffers.
 * Descriptor and available rings are not modelled: the guest driver's side is what the workload
 * already emulates, and nothing of theirs is written by the backend.
 *
 * @param index       the queue's index within its vhost dev
 * @param size        entries (the ring's num)
 * @param usedAddress guest-physical address of the used ring
 * @param buffers     guest buffers the backend fills, or null for a queue it only completes (net tx)
 */
public record VirtQueue(int index, int size, long usedAddress, GuestRange buffers) {

    /** Bytes of a used ring of {@code size} entries: flags, idx, ring[size] of {id, len}, avail_event (virtio 1.1, 2.6.8). */
    public static long usedBytes(int size) {
        return 4 + 8L * size + 2;
    }

    public VirtQueue {
        if (size < 1 || size > 32768 || Integer.bitCount(size) != 1) {
            throw new IllegalArgumentException("queue size must be a power of two up to 32768, got " + size);
        }
        if (usedAddress < 0 || usedAddress % 4 != 0) {
            throw new IllegalArgumentException("used ring must be 4-byte aligned, got " + usedAddress);
        }
    }

    /** @return the used ring's length in bytes */
    public long usedSize() {
        return usedBytes(size);
    }

    /** @return whether the backend writes data into this queue's buffers */
    public boolean writesData() {
        return buffers != null;
    }
}
