package dev.ferry.machine;

/**
 * Stops and starts a machine's vCPUs together. {@link #pause()} returns only once every vCPU
 * sits in {@link #checkpoint}, so no guest write happens after it (the migration's final sync
 * relies on that); {@link #resume()} lets them go.
 */
final class RunState {

    private final int vcpus;
    private boolean pauseRequested;
    private boolean shutdown;
    private int parked;
    private int exited;

    RunState(int vcpus) {
        this.vcpus = vcpus;
    }

    /**
     * Called by a vCPU thread between guest steps. Parks while the machine is paused.
     *
     * @return false once the machine shuts down: the vCPU must return
     */
    synchronized boolean checkpoint() {
        if (!pauseRequested) {
            return !shutdown;
        }
        parked++;
        notifyAll();
        try {
            while (pauseRequested && !shutdown) {
                wait();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            shutdown = true;
        } finally {
            parked--;
        }
        return !shutdown;
    }

    synchronized boolean pauseRequested() {
        return pauseRequested;
    }

    /** Asks every vCPU to stop; {@code kick} is run to get them out of guest mode. */
    void pause(Runnable kick) {
        synchronized (this) {
            pauseRequested = true;
        }
        kick.run();
        synchronized (this) {
            try {
                while (parked + exited < vcpus && !shutdown) {
                    wait(10);
                    if (parked + exited < vcpus) {
                        kick.run();
                    }
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted while pausing the vCPUs", e);
            }
        }
    }

    synchronized void resume() {
        pauseRequested = false;
        notifyAll();
    }

    synchronized void shutdown() {
        shutdown = true;
        notifyAll();
    }

    synchronized void exited() {
        exited++;
        notifyAll();
    }

    synchronized boolean isShutdown() {
        return shutdown;
    }
}
