package dev.ferry.machine;

import dev.ferry.api.MachineContext;
import dev.ferry.api.Options;
import dev.ferry.api.RamBlock;
import dev.ferry.machine.workload.Workload;
import dev.ferry.memory.AddressSpace;
import dev.ferry.memory.MemfdRamBlock;
import dev.ferry.memory.MemoryRegion;
import dev.ferry.memory.MemorySystem;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * A virtual machine: guest RAM in a memory system, vCPUs run by an accelerator, and the
 * workload they execute. RAM is one block, {@code pc.ram}, mapped at guest-physical address 0
 * of the system address space.
 *
 * <p>Lifecycle: {@link #create} builds it paused; {@link #start()} starts the vCPU threads;
 * {@link #pause()} and {@link #resume()} stop and restart them; {@link #close()} stops them for
 * good and releases memory.
 */
public final class Machine implements AutoCloseable {

    /** Name of the guest RAM block and region, as QEMU's PC machine. */
    public static final String RAM_NAME = "pc.ram";

    private final MachineConfig config;
    private final MemorySystem memory;
    private final AddressSpace systemMemory;
    private final MemfdRamBlock ram;
    private final Accelerator accelerator;
    private final RunState runState;
    private final List<VcpuControl> controls = new ArrayList<>();
    private final List<VcpuLoop> loops = new ArrayList<>();
    private final List<Thread> threads = new ArrayList<>();
    private volatile Throwable vcpuFailure;
    private boolean started;
    private boolean closed;

    private Machine(MachineConfig requested, Accelerator accelerator) {
        this.config = reserve(requested, accelerator.reservedRamBytes());
        this.accelerator = accelerator;
        this.memory = new MemorySystem();
        try {
            this.ram = memory.allocateRam(RAM_NAME, config.ramSize());
            if (config.preallocate()) {
                ram.preallocate();
            }
            MemoryRegion system = memory.container("system", Long.MAX_VALUE);
            this.systemMemory = memory.addressSpace("memory", system);
            accelerator.attach(memory, systemMemory);
            system.addSubregion(0, memory.ramRegion(RAM_NAME, ram));
            this.runState = new RunState(config.vcpus());
            double pagesPerSecond = config.workload().pagesPerSecondPerVcpu(config.vcpus());
            for (int i = 0; i < config.vcpus(); i++) {
                long[] slice = config.workload().slice(config.ramSize(), i, config.vcpus());
                controls.add(new VcpuControl(i, runState, pagesPerSecond));
                loops.add(accelerator.createVcpu(i, new VcpuSetup(config.workload(), ram, slice[0], slice[1],
                        config.vcpus())));
            }
        } catch (RuntimeException e) {
            accelerator.close();
            memory.close();
            throw e;
        }
    }

    /**
     * Moves a default working set (all RAM) above the accelerator's reserved area, and refuses
     * an explicit one that overlaps it.
     */
    private static MachineConfig reserve(MachineConfig config, long reserved) {
        Workload w = config.workload();
        if (reserved == 0 || w.workingSetOffset() >= reserved) {
            return config;
        }
        if (w.workingSetOffset() == 0 && w.workingSetSize() == 0) {
            return new MachineConfig(config.ramSize(), config.vcpus(), w.withWorkingSet(reserved, 0),
                    config.acceleratorProperties(), config.preallocate());
        }
        throw new IllegalArgumentException("the working set starts at " + w.workingSetOffset()
                + " bytes, inside the " + reserved + " bytes the accelerator reserves; start it at " + reserved
                + " or above");
    }

    /**
     * Builds a machine with a new accelerator from {@code provider}; its vCPUs do not run yet.
     *
     * @throws IllegalArgumentException for a bad configuration or accelerator property
     */
    public static Machine create(MachineConfig config, AcceleratorProvider provider) {
        Accelerator accelerator = provider.create(config.acceleratorProperties());
        return new Machine(config, accelerator);
    }

    /** @return how it was built */
    public MachineConfig config() {
        return config;
    }

    /** @return the machine's memory system */
    public MemorySystem memory() {
        return memory;
    }

    /** @return the system address space ("memory") */
    public AddressSpace systemMemory() {
        return systemMemory;
    }

    /** @return guest RAM */
    public MemfdRamBlock ram() {
        return ram;
    }

    /** @return the accelerator */
    public Accelerator accelerator() {
        return accelerator;
    }

    /** @return the number of vCPUs */
    public int vcpus() {
        return config.vcpus();
    }

    /** Starts the vCPU threads. */
    public synchronized void start() {
        if (closed) {
            throw new IllegalStateException("machine is closed");
        }
        if (started) {
            return;
        }
        started = true;
        for (int i = 0; i < loops.size(); i++) {
            VcpuLoop loop = loops.get(i);
            VcpuControl control = controls.get(i);
            Thread t = Thread.ofPlatform().name("vcpu-" + i).daemon().unstarted(() -> {
                try {
                    loop.run(control);
                } catch (Throwable e) {
                    vcpuFailure = e;
                } finally {
                    runState.exited();
                }
            });
            threads.add(t);
            t.start();
        }
    }

    /** Stops every vCPU; returns once none runs guest code (QEMU's vm_stop). */
    public void pause() {
        synchronized (this) {
            if (!started) {
                return;
            }
        }
        runState.pause(this::kickAll);
    }

    /** Lets the vCPUs run again (QEMU's vm_start). */
    public void resume() {
        runState.resume();
    }

    private void kickAll() {
        loops.forEach(VcpuLoop::kick);
    }

    /**
     * Throttles every vCPU: it sleeps {@code percent}% of the time (QEMU's cpu_throttle_set, the
     * lever of auto-converge).
     */
    public void setThrottle(int percent) {
        controls.forEach(c -> c.setThrottle(percent));
    }

    /** @return the current throttle percentage */
    public int throttle() {
        return controls.getFirst().throttlePercent();
    }

    /** @return pages written by all vCPUs since start */
    public long pagesWritten() {
        long n = 0;
        for (VcpuControl c : controls) {
            n += c.pagesWritten();
        }
        return n;
    }

    /** @return the loop of vCPU {@code index}, for saving and loading its state */
    public VcpuLoop vcpu(int index) {
        return loops.get(index);
    }

    /** @return the error a vCPU thread died of, if one did */
    public Optional<Throwable> vcpuFailure() {
        return Optional.ofNullable(vcpuFailure);
    }

    /** @return a context for a plugin created for this machine, with its options */
    public MachineContext context(Options options) {
        return new MachineContext() {
            @Override
            public String accelerator() {
                return accelerator.name();
            }

            @Override
            public int vcpus() {
                return config.vcpus();
            }

            @Override
            public List<RamBlock> ramBlocks() {
                return List.copyOf(memory.ramBlocks());
            }

            @Override
            public Options options() {
                return options;
            }

            @Override
            public <T> Optional<T> lookup(Class<T> type) {
                if (type.isInstance(Machine.this)) {
                    return Optional.of(type.cast(Machine.this));
                }
                if (type == MemorySystem.class) {
                    return Optional.of(type.cast(memory));
                }
                return accelerator.lookup(type);
            }
        };
    }

    /** Stops the vCPUs for good and releases the accelerator and memory. */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        runState.shutdown();
        kickAll();
        for (Thread t : threads) {
            try {
                while (t.isAlive()) {
                    t.join(100);
                    kickAll();
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        accelerator.close();
        memory.close();
    }
}
