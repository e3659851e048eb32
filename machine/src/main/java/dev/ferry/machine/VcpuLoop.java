package dev.ferry.machine;

/** One vCPU's execution, run on its own thread by the machine. */
public interface VcpuLoop {

    /**
     * Runs the guest until {@link VcpuControl#checkpoint} returns false. Checkpoints must come
     * often enough (every millisecond or so of guest time) for pause and pacing to be prompt.
     */
    void run(VcpuControl control);

    /** Gets the vCPU out of guest mode soon, so it reaches a checkpoint (called from another thread). */
    default void kick() {
    }

    /** @return the size of {@link #saveState()}'s result, fixed by the accelerator; reading it has no side effects */
    int stateBytes();

    /** @return the vCPU's state (registers, or the workload cursor), to move it to another machine */
    byte[] saveState();

    /**
     * Restores state saved by {@link #saveState()}, before the vCPU runs.
     *
     * @throws IllegalArgumentException if the state is malformed
     */
    void loadState(byte[] state);
}
