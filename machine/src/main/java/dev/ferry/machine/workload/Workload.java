package dev.ferry.machine.workload;

import java.util.Objects;

/**
 * What the guest does: the same spec drives the software vCPU (in Java) and the KVM vCPU
 * (generated guest code). The working set is split into one slice per vCPU; each vCPU writes
 * only its own slice.
 *
 * @param pattern          how pages are picked
 * @param workingSetOffset byte offset of the working set within guest RAM (page-aligned)
 * @param workingSetSize   bytes of the working set (page-aligned); 0 means all RAM from the offset
 * @param rateMiBps        target dirty rate in MiB/s of pages written, over all vCPUs; 0 means
 *                         as fast as the vCPUs go
 * @param writeSize        bytes written at the start of each page touched (1..4096)
 * @param hotFraction      hot-cold only: the share of the slice that is hot
 * @param hotProbability   hot-cold only: the chance a write goes to the hot part
 * @param seed             seed of the random patterns
 */
public record Workload(Pattern pattern, long workingSetOffset, long workingSetSize, double rateMiBps, int writeSize,
                       double hotFraction, double hotProbability, long seed) {

    /** Page size the workload counts in. */
    public static final int PAGE_SIZE = 4096;

    public Workload {
        Objects.requireNonNull(pattern, "pattern");
        if (workingSetOffset < 0 || workingSetOffset % PAGE_SIZE != 0) {
            throw new IllegalArgumentException("working-set offset must be a non-negative multiple of 4096: " + workingSetOffset);
        }
        if (workingSetSize < 0 || workingSetSize % PAGE_SIZE != 0) {
            throw new IllegalArgumentException("working-set size must be a non-negative multiple of 4096: " + workingSetSize);
        }
        if (!(rateMiBps >= 0) || Double.isInfinite(rateMiBps)) {
            throw new IllegalArgumentException("rate must be a non-negative number of MiB/s: " + rateMiBps);
        }
        if (writeSize < 1 || writeSize > PAGE_SIZE) {
            throw new IllegalArgumentException("write size must be 1 to 4096 bytes: " + writeSize);
        }
        if (!(hotFraction > 0 && hotFraction <= 1) || !(hotProbability >= 0 && hotProbability <= 1)) {
            throw new IllegalArgumentException("hot fraction must be in (0, 1] and hot probability in [0, 1]");
        }
        if (seed == 0) {
            seed = 0x9E3779B97F4A7C15L; // xorshift has a fixed point at zero
        }
    }

    /** @return a workload of {@code pattern} at {@code rateMiBps} over all RAM from the offset, 4 KiB writes */
    public static Workload of(Pattern pattern, double rateMiBps) {
        return new Workload(pattern, 0, 0, rateMiBps, PAGE_SIZE, 0.1, 0.9, 1);
    }

    /** @return this workload with another working set */
    public Workload withWorkingSet(long offset, long size) {
        return new Workload(pattern, offset, size, rateMiBps, writeSize, hotFraction, hotProbability, seed);
    }

    /** @return the working-set size resolved against a RAM size */
    public long workingSetSize(long ramSize) {
        long size = workingSetSize == 0 ? ramSize - workingSetOffset : workingSetSize;
        if (size <= 0 || workingSetOffset + size > ramSize) {
            throw new IllegalArgumentException("working set [" + workingSetOffset + ", +" + size
                    + ") does not fit in " + ramSize + " bytes of RAM");
        }
        return size;
    }

    /**
     * The slice of the working set that vCPU {@code index} of {@code vcpus} writes: whole pages,
     * the last vCPU taking the remainder.
     *
     * @return {firstPage, pageCount} relative to RAM offset 0
     */
    public long[] slice(long ramSize, int index, int vcpus) {
        long pages = workingSetSize(ramSize) / PAGE_SIZE;
        long per = pages / vcpus;
        if (per == 0) {
            throw new IllegalArgumentException("working set of " + pages + " pages is too small for " + vcpus + " vCPUs");
        }
        long first = workingSetOffset / PAGE_SIZE + per * index;
        long count = index == vcpus - 1 ? pages - per * index : per;
        return new long[]{first, count};
    }

    /** @return the target rate in pages per second for one of {@code vcpus}, or 0 for unlimited */
    public double pagesPerSecondPerVcpu(int vcpus) {
        return rateMiBps * (1024.0 * 1024.0 / PAGE_SIZE) / vcpus;
    }
}
