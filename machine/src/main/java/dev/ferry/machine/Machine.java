package dev.ferry.machine;

import dev.ferry.api.Device;
import dev.ferry.api.GuestRange;
import dev.ferry.api.MachineContext;
import dev.ferry.api.MemoryListener;
import dev.ferry.api.Options;
import dev.ferry.api.RamBlock;
import dev.ferry.machine.workload.Workload;
import dev.ferry.memory.AddressSpace;
import dev.ferry.memory.MemfdRamBlock;
import dev.ferry.memory.MemoryRegion;
import dev.ferry.memory.MemorySystem;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Supplier;

/**
 * A virtual machine: guest RAM in a memory system, vCPUs run by an accelerator, and the
 * workload they execute. RAM is one block, {@code pc.ram}, mapped at guest-physical address 0
 * of the system address space.
 *
 * <p>Lifecycle: {@link #create} builds it paused; {@link #start()} starts the vCPU threads;
 * {@link #pause()} and {@link #resume()} stop and restart them; {@link #close()} stops them for
 * good and releases memory. Devices ({@link #plug}) start and stop with the vCPUs: after the
 * vCPUs on the way down, before them on the way up, as QEMU's VM state change handlers run.
 * The top {@link MachineConfig#deviceMemory()} bytes of RAM are set aside for their rings and
 * buffers ({@link #allocateDeviceMemory}).
 */
public final class Machine implements AutoCloseable {

    /** Name of the guest RAM block and region, as QEMU's PC machine. */
    public static final String RAM_NAME = "pc.ram";
    /** BARs go from the first GiB boundary above RAM (at least 1 GiB) upwards. */
    static final long BAR_BASE = 1L << 30;

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
    /** Whether the devices were told to start: the machine runs (started and not paused). */
    private boolean running;
    private final MemoryBackend backend;
    private final List<Device> devices = new ArrayList<>();
    /** Next free byte of the device memory at the top of RAM. */
    private long deviceMemoryNext;
    private final Map<Class<?>, Object> shared = new ConcurrentHashMap<>();
    private final List<Device> cpus = new ArrayList<>();
    /** Next free guest-physical address for a BAR: above RAM, as firmware places 64-bit BARs. */
    private long nextBar;

    private Machine(MachineConfig requested, Accelerator accelerator, MemoryBackend backend) {
        this.accelerator = accelerator;
        this.backend = backend;
        this.memory = new MemorySystem();
        try {
            this.config = reserve(requested, accelerator.reservedRamBytes());
            this.ram = memory.addRam(backend.take());
            if (config.preallocate()) {
                ram.preallocate();
            }
            MemoryRegion system = memory.container("system", Long.MAX_VALUE);
            this.systemMemory = memory.addressSpace("memory", system);
            accelerator.attach(memory, systemMemory);
            system.addSubregion(0, memory.ramRegion(RAM_NAME, ram));
            this.runState = new RunState(config.vcpus());
            this.deviceMemoryNext = config.ramSize() - config.deviceMemory();
            double pagesPerSecond = config.workload().pagesPerSecondPerVcpu(config.vcpus());
            for (int i = 0; i < config.vcpus(); i++) {
                long[] slice = config.workload().slice(config.ramSize(), i, config.vcpus());
                controls.add(new VcpuControl(i, runState, pagesPerSecond));
                loops.add(accelerator.createVcpu(i, new VcpuSetup(config.workload(), ram, slice[0], slice[1],
                        config.vcpus())));
                cpus.add(new CpuDevice(i, loops.getLast()));
            }
            this.nextBar = Math.max(BAR_BASE, Math.ceilDiv(config.ramSize(), BAR_BASE) * BAR_BASE);
        } catch (RuntimeException e) {
            accelerator.close();
            backend.close();
            memory.close();
            throw e;
        }
    }

    /**
     * Keeps the workload out of the accelerator's reserved area at the bottom of RAM and out of
     * the device memory at the top: a default working set (all RAM) shrinks to what lies
     * between; an explicit one that overlaps either is refused.
     */
    private static MachineConfig reserve(MachineConfig config, long reserved) {
        Workload w = config.workload();
        long deviceMemory = config.deviceMemory();
        long top = config.ramSize() - deviceMemory;
        if (w.workingSetOffset() == 0 && w.workingSetSize() == 0) {
            if (reserved == 0 && deviceMemory == 0) {
                return config;
            }
            if (top <= reserved) {
                throw new IllegalArgumentException("devices ask for " + deviceMemory + " bytes of guest RAM, which "
                        + "leaves the guest nothing above the " + reserved + " bytes the accelerator reserves; "
                        + "give the guest more memory");
            }
            return config.withWorkload(w.withWorkingSet(reserved, deviceMemory == 0 ? 0 : top - reserved));
        }
        if (w.workingSetOffset() < reserved) {
            throw new IllegalArgumentException("the working set starts at " + w.workingSetOffset()
                    + " bytes, inside the " + reserved + " bytes the accelerator reserves; start it at " + reserved
                    + " or above");
        }
        long end = w.workingSetOffset() + w.workingSetSize(config.ramSize());
        if (end > top) {
            throw new IllegalArgumentException("the working set ends at " + end + " bytes, inside the "
                    + deviceMemory + " bytes at the top of RAM set aside for devices");
        }
        return config;
    }

    /**
     * Builds a machine with a new accelerator from {@code provider}; its vCPUs do not run yet.
     *
     * @throws IllegalArgumentException for a bad configuration or accelerator property, or RAM
     *                                  the host cannot hold ({@link HostMemory}), refused before any
     *                                  is allocated, with or without preallocation
     */
    public static Machine create(MachineConfig config, AcceleratorProvider provider) {
        return create(config, provider, MemoryBackend.memfd(config.ramSize()));
    }

    /**
     * Builds a machine whose RAM is {@code backend}, made beforehand (and perhaps faulted in
     * already, or still being faulted in); the machine owns it from here on and closes it,
     * also when it cannot be built.
     *
     * @throws IllegalArgumentException for a bad configuration or accelerator property, or a
     *                                  backend whose size is not the configuration's RAM size
     */
    public static Machine create(MachineConfig config, AcceleratorProvider provider, MemoryBackend backend) {
        Accelerator accelerator;
        try {
            if (backend.size() != config.ramSize()) {
                throw new IllegalArgumentException("a memory backend of " + backend.size()
                        + " bytes for a guest of " + config.ramSize());
            }
            accelerator = provider.create(config.acceleratorProperties());
        } catch (RuntimeException e) {
            backend.close();
            throw e;
        }
        return new Machine(config, accelerator, backend);
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
        startDevices();
    }

    /**
     * Stops every vCPU, then every device; returns once neither runs guest code nor writes guest
     * memory (QEMU's vm_stop).
     */
    public void pause() {
        synchronized (this) {
            if (!started) {
                return;
            }
        }
        runState.pause(this::kickAll);
        stopDevices();
    }

    /** Lets the devices, then the vCPUs, run again (QEMU's vm_start). */
    public void resume() {
        startDevices();
        runState.resume();
    }

    private synchronized void startDevices() {
        if (started && !running && !closed) {
            running = true;
            devices.forEach(Device::start);
        }
    }

    /** Stops every device even if one fails; the first failure is thrown after. */
    private synchronized void stopDevices() {
        if (!running) {
            return;
        }
        running = false;
        RuntimeException failure = null;
        for (Device d : devices) {
            try {
                d.stop();
            } catch (RuntimeException e) {
                if (failure == null) {
                    failure = e;
                } else {
                    failure.addSuppressed(e);
                }
            }
        }
        if (failure != null) {
            throw failure;
        }
    }

    /**
     * Sets aside {@code bytes} of the device memory at the top of RAM for one device.
     *
     * @throws IllegalArgumentException if the machine was not built with that much device memory left
     */
    public synchronized GuestRange allocateDeviceMemory(long bytes) {
        if (bytes <= 0 || bytes % Workload.PAGE_SIZE != 0 || deviceMemoryNext + bytes > config.ramSize()) {
            throw new IllegalArgumentException("cannot set aside " + bytes + " bytes of device memory: "
                    + (config.ramSize() - deviceMemoryNext) + " of " + config.deviceMemory() + " bytes are left");
        }
        GuestRange r = new GuestRange(deviceMemoryNext, bytes);
        deviceMemoryNext += bytes;
        return r;
    }

    /**
     * Plugs a device: registers its memory listeners on the system address space and, if the
     * machine runs, starts it.
     *
     * @throws IllegalArgumentException if a device with its id is plugged already
     */
    public synchronized void plug(Device device) {
        if (closed) {
            throw new IllegalStateException("machine is closed");
        }
        for (Device d : devices) {
            if (d.id().equals(device.id())) {
                throw new IllegalArgumentException("a device with id " + device.id() + " is plugged already");
            }
        }
        List<MemoryListener> listeners = device.memoryListeners();
        List<MemoryListener> done = new ArrayList<>();
        try {
            for (MemoryListener l : listeners) {
                systemMemory.registerListener(l);
                done.add(l);
            }
        } catch (RuntimeException e) {
            done.reversed().forEach(systemMemory::unregisterListener);
            throw e;
        }
        devices.add(device);
        if (running) {
            device.start();
        }
    }

    /** Stops a device, unregisters its listeners and closes it (hot unplug). */
    public synchronized void unplug(Device device) {
        if (!devices.remove(device)) {
            return;
        }
        if (running) {
            device.stop();
        }
        detach(device);
    }

    /** Unregisters a stopped device's listeners and closes it. */
    private void detach(Device device) {
        device.memoryListeners().reversed().forEach(systemMemory::unregisterListener);
        device.close();
    }

    /** @return the plugged devices, in plug order */
    public synchronized List<Device> devices() {
        return List.copyOf(devices);
    }

    /**
     * @return everything with state that migrates, in the order it goes in the stream (QEMU's
     *         savevm handlers): the vCPUs as devices {@code cpu0, cpu1, ...} (description "cpu"),
     *         then the plugged devices in plug order
     */
    public synchronized List<Device> migratableDevices() {
        List<Device> all = new ArrayList<>(cpus);
        all.addAll(devices);
        return all;
    }

    /** Assigns guest-physical space for a BAR above RAM, naturally aligned (see {@link MachineContext#assignBar}). */
    public synchronized long assignBar(long size) {
        if (size < 4096 || Long.bitCount(size) != 1) {
            throw new IllegalArgumentException("a BAR's size must be a power of two of at least 4096, got " + size);
        }
        long at = Math.ceilDiv(nextBar, size) * size;
        nextBar = at + size;
        return at;
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
        return new Context(options, null);
    }

    /** @return a context for a device, with its options and the device memory set aside for it */
    public MachineContext deviceContext(Options options, GuestRange deviceMemory) {
        return new Context(options, deviceMemory);
    }

    private final class Context implements MachineContext {

        private final Options options;
        private final GuestRange deviceMemory;

        Context(Options options, GuestRange deviceMemory) {
            this.options = options;
            this.deviceMemory = deviceMemory;
        }

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
            if (type == AddressSpace.class) {
                return Optional.of(type.cast(systemMemory));
            }
            return accelerator.lookup(type);
        }

        @Override
        public Optional<GuestRange> deviceMemory() {
            return Optional.ofNullable(deviceMemory);
        }

        @Override
        public long assignBar(long size) {
            return Machine.this.assignBar(size);
        }

        @Override
        public <T> T shared(Class<T> type, Supplier<? extends T> create) {
            return type.cast(shared.computeIfAbsent(type, k -> Objects.requireNonNull(create.get(), "shared object")));
        }
    }

    /**
     * Faults guest RAM in on a thread of its own ({@link MemoryBackend#preallocateInBackground()}),
     * so that a destination has its RAM preallocated without waiting for it: the incoming
     * loader, which fills RAM from the bottom, meets it half way. QEMU's destination faults its
     * RAM in as the pages arrive; Ferry's guest then also finds the pages no migration wrote
     * already there. {@link #close()} stops it.
     */
    public void preallocateInBackground() {
        backend.preallocateInBackground();
    }

    /** @return whether RAM is still being faulted in behind the guest's back */
    public boolean preallocating() {
        return backend.preallocating();
    }

    /** Stops the vCPUs for good and releases the accelerator and memory. */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        // Like the vCPU threads below, the preallocation thread must be gone before RAM is unmapped.
        backend.close();
        runState.shutdown();
        kickAll();
        // Every vCPU thread must be gone before guest RAM is unmapped below, even if this thread
        // is interrupted: one still running would touch freed memory (SIGSEGV).
        boolean interrupted = false;
        for (Thread t : threads) {
            while (t.isAlive()) {
                try {
                    t.join(100);
                } catch (InterruptedException e) {
                    interrupted = true;
                }
                kickAll();
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
        try {
            stopDevices();
        } catch (RuntimeException e) {
            // Closing goes on: the machine is going away, and its devices' failures were the
            // migration's to report while it ran.
        }
        devices.reversed().forEach(this::detach);
        devices.clear();
        accelerator.close();
        memory.close();
    }
}
