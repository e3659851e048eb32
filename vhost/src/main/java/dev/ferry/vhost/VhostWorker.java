package dev.ferry.vhost;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;

/**
 * A vhost dev's backend thread (the kernel's vhost worker, or a vhost-user process's queue
 * thread): it moves "packets" or "blocks" into guest buffers by DMA and completes them on the
 * used rings, at a set rate. Each transfer fills one buffer page, stamped with a running count so
 * that no two transfers leave the same bytes (a page the migration misses shows as a digest
 * mismatch), then adds a used element. Queues that carry no data (net tx) get a completion for
 * each transfer on their partner queue, as transmits complete.
 */
final class VhostWorker implements Runnable {

    private final VhostDev dev;
    private final double pagesPerSecond;
    private final boolean random;
    private final int[] usedIdx;
    private final SplittableRandom rng;
    private volatile boolean stop;
    private volatile Throwable failure;
    private long transfers;

    /**
     * @param pagesPerSecond buffer pages this dev fills per second over all its data queues
     * @param seed           for the random order
     */
    VhostWorker(VhostDev dev, double pagesPerSecond, boolean random, long seed, int[] usedIdx) {
        this.dev = dev;
        this.pagesPerSecond = pagesPerSecond;
        this.random = random;
        this.usedIdx = usedIdx;
        this.rng = new SplittableRandom(seed);
    }

    void requestStop() {
        stop = true;
    }

    /** @return what the thread died of, if it did */
    Throwable failure() {
        return failure;
    }

    @Override
    public void run() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment page = arena.allocate(4096, 8);
            List<VirtQueue> queues = dev.queues();
            List<VirtQueue> data = queues.stream().filter(VirtQueue::writesData).toList();
            if (data.isEmpty() || pagesPerSecond <= 0) {
                return;
            }
            long intervalNanos = (long) (TimeUnit.SECONDS.toNanos(1) / pagesPerSecond);
            long next = System.nanoTime();
            int[] cursor = new int[data.size()];
            while (!stop) {
                for (int qi = 0; qi < data.size() && !stop; qi++) {
                    VirtQueue q = data.get(qi);
                    int pages = (int) (q.buffers().size() / 4096);
                    int buffer = random ? rng.nextInt(pages) : cursor[qi]++ % pages;
                    transfers++;
                    page.fill((byte) transfers);
                    page.set(ValueLayout.JAVA_LONG, 0, transfers);
                    dev.dmaWrite(q.buffers().address() + 4096L * buffer, page);
                    complete(q, buffer);
                    // A transmit completes on the queue after a data queue (net: rx, then tx).
                    int partner = q.index() + 1;
                    if (partner < queues.size() && !queues.get(partner).writesData()) {
                        complete(queues.get(partner), buffer);
                    }
                    next += intervalNanos;
                    long wait = next - System.nanoTime();
                    if (wait > 0) {
                        LockSupport.parkNanos(this, wait);
                    } else if (wait < -TimeUnit.MILLISECONDS.toNanos(100)) {
                        next = System.nanoTime(); // fell behind (host busy): do not burst to catch up
                    }
                }
            }
        } catch (Throwable e) {
            failure = e;
        }
    }

    private void complete(VirtQueue q, int id) {
        dev.completeUsed(q, usedIdx[q.index()], id, 4096);
        usedIdx[q.index()]++;
    }

}
