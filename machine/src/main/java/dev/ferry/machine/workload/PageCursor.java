package dev.ferry.machine.workload;

/**
 * Picks the pages one vCPU writes, following a {@link Workload}. The software vCPU uses it
 * directly; the KVM guest code implements the same arithmetic in x86 so both accelerators dirty
 * memory alike. Its whole state is three longs, so it migrates with the vCPU.
 */
public final class PageCursor {

    private final Pattern pattern;
    private final long first;
    private final long count;
    private final long hotCount;
    private final long hotThreshold;
    private long position;
    private long random;

    /**
     * @param workload the workload
     * @param first    the slice's first page
     * @param count    the slice's page count
     * @param vcpu     the vCPU index, mixed into the seed so vCPUs differ
     */
    public PageCursor(Workload workload, long first, long count, int vcpu) {
        this.pattern = workload.pattern();
        this.first = first;
        this.count = count;
        this.hotCount = Math.max(1, (long) (count * workload.hotFraction()));
        // Compare the top 32 bits of a random draw against this to decide hot or cold.
        this.hotThreshold = (long) (workload.hotProbability() * (1L << 32));
        long seed = workload.seed() ^ (0x9E3779B97F4A7C15L * (vcpu + 1));
        this.random = seed == 0 ? 1 : seed;
    }

    private long nextRandom() {
        long x = random;
        x ^= x << 13;
        x ^= x >>> 7;
        x ^= x << 17;
        random = x;
        return x;
    }

    /** @return the next page to write (a page index within RAM) */
    public long next() {
        return switch (pattern) {
            case SEQUENTIAL -> {
                long page = first + position;
                position = position + 1 == count ? 0 : position + 1;
                yield page;
            }
            case RANDOM -> first + Long.remainderUnsigned(nextRandom(), count);
            case IDLE -> throw new IllegalStateException("an idle workload writes no page");
            case HOTCOLD -> {
                long r = nextRandom();
                boolean hot = (r >>> 32) < hotThreshold || hotCount == count;
                long pick = nextRandom();
                yield hot ? first + Long.remainderUnsigned(pick, hotCount)
                        : first + hotCount + Long.remainderUnsigned(pick, count - hotCount);
            }
        };
    }

    /** @return the cursor's state, to carry it to another machine */
    public long[] state() {
        return new long[]{position, random};
    }

    /** Restores state saved by {@link #state()}. */
    public void restore(long[] state) {
        if (state.length != 2 || state[0] < 0 || state[0] >= count || state[1] == 0) {
            throw new IllegalArgumentException("bad page cursor state");
        }
        position = state[0];
        random = state[1];
    }
}
