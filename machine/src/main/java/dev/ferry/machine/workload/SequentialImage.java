package dev.ferry.machine.workload;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Optional;

/**
 * Checks a memory image written by the {@link Pattern#SEQUENTIAL} workload on its own, without
 * the source, as QEMU's migration test checks its guest: in each vCPU's slice the counter bytes
 * read v+1 on a prefix and v on the rest (mod 256). A lost page breaks that shape.
 */
public final class SequentialImage {

    private SequentialImage() {
    }

    /**
     * @param ram      the guest RAM image
     * @param workload the sequential workload that wrote it
     * @param vcpus    how many vCPUs wrote it
     * @return empty if the image is consistent, else what is wrong and where
     */
    public static Optional<String> check(MemorySegment ram, Workload workload, int vcpus) {
        if (workload.pattern() != Pattern.SEQUENTIAL) {
            throw new IllegalArgumentException("only a sequential workload's image can be checked on its own");
        }
        long pageSize = Workload.PAGE_SIZE;
        for (int v = 0; v < vcpus; v++) {
            long[] slice = workload.slice(ram.byteSize(), v, vcpus);
            int steps = 0;
            int prev = ram.get(ValueLayout.JAVA_BYTE, slice[0] * pageSize) & 0xff;
            for (long p = slice[0] + 1; p < slice[0] + slice[1]; p++) {
                int cur = ram.get(ValueLayout.JAVA_BYTE, p * pageSize) & 0xff;
                if (cur != prev) {
                    if (((prev - cur) & 0xff) != 1 || ++steps > 1) {
                        return Optional.of(String.format("vCPU %d's slice breaks at page %d (0x%x): counter %d after %d",
                                v, p, p * pageSize, cur, prev));
                    }
                }
                prev = cur;
            }
        }
        return Optional.empty();
    }

    /**
     * How far each vCPU has got: pages written since the counters were all zero, modulo
     * {@code 256 * slice pages}. Valid for an image that {@link #check} accepts.
     *
     * @return one figure per vCPU
     */
    public static long[] steps(MemorySegment ram, Workload workload, int vcpus) {
        long[] out = new long[vcpus];
        for (int v = 0; v < vcpus; v++) {
            long[] slice = workload.slice(ram.byteSize(), v, vcpus);
            int first = ram.get(ValueLayout.JAVA_BYTE, slice[0] * Workload.PAGE_SIZE) & 0xff;
            long prefix = 0;
            while (prefix < slice[1]
                    && (ram.get(ValueLayout.JAVA_BYTE, (slice[0] + prefix) * Workload.PAGE_SIZE) & 0xff) == first) {
                prefix++;
            }
            out[v] = prefix == slice[1] ? (long) first * slice[1] : (long) ((first - 1) & 0xff) * slice[1] + prefix;
        }
        return out;
    }

    /**
     * Pages written between two images of the same guest, from their {@link #steps}: summed
     * over vCPUs, each modulo its cycle of 256 passes over its slice. Exact while no vCPU has
     * gone a whole cycle between the two.
     *
     * @param ramBytes the guest's RAM size
     */
    public static long advance(long[] from, long[] to, Workload workload, long ramBytes) {
        if (from.length != to.length) {
            throw new IllegalArgumentException("steps of " + from.length + " and " + to.length + " vCPUs");
        }
        long sum = 0;
        for (int v = 0; v < from.length; v++) {
            long cycle = 256 * workload.slice(ramBytes, v, from.length)[1];
            sum += Math.floorMod(to[v] - from[v], cycle);
        }
        return sum;
    }
}
