package dev.ferry.vhost;

import dev.ferry.api.Device;
import dev.ferry.api.GuestRange;
import dev.ferry.api.MachineContext;
import dev.ferry.api.MemoryListener;
import dev.ferry.api.vmstate.VMState;
import dev.ferry.api.vmstate.VMStateDescription;
import dev.ferry.api.vmstate.VMStateField.Count;
import dev.ferry.api.vmstate.VMStateType;
import dev.ferry.memory.AddressSpace;
import dev.ferry.memory.BarMapping;
import dev.ferry.memory.IoHandler;
import dev.ferry.memory.MemoryRegion;
import dev.ferry.memory.MemorySystem;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.locks.LockSupport;

/**
 * A virtio device with a vhost backend. A virtio-net device with N queue pairs is N vhost devs,
 * one per pair (rx and tx), as QEMU's vhost-net makes them; a blk device with N queues is one
 * vhost dev (vhost-user-blk). Its rings and buffers lie in the device memory the machine set
 * aside for it, and one worker thread per vhost dev fills buffers by DMA at the device's rate.
 *
 * <p>The device sits on PCI as a modern virtio device: BAR 4 holds its registers and, from
 * {@link #NOTIFY_OFFSET}, one notify address per virtqueue (each its own I/O region, where QEMU
 * puts an ioeventfd). The firmware maps the BAR at boot; on a destination its state load does.
 *
 * <p>State (version 1, description named after the device type): the PCI command register and
 * BAR 4, and per vhost dev per queue the ring size, the used ring's address (both must match:
 * they follow from the options) and the used index, so the destination's backend carries on
 * where the source stopped. Post-load maps the BAR and its notifiers, then reads every used
 * ring's index through the address space and refuses a state that disagrees with guest memory.
 */
public final class VhostDevice implements Device {

    /** The two kinds of device. */
    public enum Kind {
        /** virtio-net with vhost-net: a vhost dev per queue pair, kernel backend by default. */
        NET("vhost-net", VhostBackendType.KERNEL),
        /** virtio-blk with vhost-user-blk: one vhost dev for all queues, user backend by default. */
        BLK("vhost-blk", VhostBackendType.USER);

        private final String deviceName;
        private final VhostBackendType defaultBackend;

        Kind(String deviceName, VhostBackendType defaultBackend) {
            this.deviceName = deviceName;
            this.defaultBackend = defaultBackend;
        }

        /** @return the device type's name */
        public String deviceName() {
            return deviceName;
        }

        /** @return the backend a device of this kind has unless told otherwise */
        public VhostBackendType defaultBackend() {
            return defaultBackend;
        }

        /** @return the guest memory a device of this kind with these options needs */
        public long guestMemory(VhostOptions o) {
            return switch (this) {
                case NET -> o.queues() * (o.queueBytes(true) + o.queueBytes(false));
                case BLK -> o.queues() * o.queueBytes(true);
            };
        }
    }

    /** BAR 4's size: common configuration below the notify area, as virtio-pci lays it out. */
    static final long BAR_SIZE = 0x4000;
    /** Where the per-queue notify addresses begin in BAR 4; 4 bytes each. */
    static final long NOTIFY_OFFSET = 0x3000;

    /** One queue's state, as the description sees it. */
    private record QueueRef(VirtQueue queue, int[] used) {
    }

    /** One vhost dev's state. */
    private record DevRef(List<QueueRef> queues) {
    }

    private static final VMStateDescription<QueueRef> VQ = VMStateDescription.<QueueRef>builder("virtqueue")
            .equal("num", VMStateType.UINT16, r -> r.queue().size())
            .uint64Equal("used", r -> r.queue().usedAddress())
            .uint16("used_idx", r -> r.used()[r.queue().index()] & 0xffff,
                    (r, v) -> r.used()[r.queue().index()] = (int) v)
            .build();

    private static final VMStateDescription<DevRef> DEV = VMStateDescription.<DevRef>builder("vhost-dev")
            .uint32Equal("nvqs", r -> r.queues().size())
            .structArray("vqs", VQ, Count.from("nvqs", 2 * VhostOptions.MAX_QUEUES), DevRef::queues)
            .build();

    private static VMStateDescription<VhostDevice> description(Kind kind) {
        return VMStateDescription.<VhostDevice>builder(kind.deviceName())
                .uint16("command", d -> d.command, (d, v) -> d.command = (int) v)
                .uint64("bar4", d -> d.bar4, (d, v) -> d.bar4 = v)
                .uint32Equal("ndevs", d -> d.devs.size())
                .structArray("devs", DEV, Count.from("ndevs", VhostOptions.MAX_QUEUES), d -> d.devRefs)
                .postLoad((d, version) -> d.postLoad())
                .build();
    }

    private static final VMStateDescription<VhostDevice> NET_VMSD = description(Kind.NET);
    private static final VMStateDescription<VhostDevice> BLK_VMSD = description(Kind.BLK);

    private final String id;
    private final Kind kind;
    private final VhostOptions options;
    private final List<VhostDev> devs = new ArrayList<>();
    private final List<int[]> usedIdx = new ArrayList<>();
    private final List<VhostWorker> workers = new ArrayList<>();
    private final List<Thread> threads = new ArrayList<>();
    private final long seed;
    private final List<DevRef> devRefs = new ArrayList<>();
    private final MachineContext machine;
    private final MemorySystem memory;
    private final AddressSpace system;
    private final MemoryRegion bar;
    private final BarMapping mapping;
    private int command;
    private long bar4 = BarMapping.UNMAPPED;

    private VhostDevice(String id, Kind kind, VhostOptions options, MachineContext machine) {
        this.id = id;
        this.kind = kind;
        this.options = options;
        this.seed = id.hashCode();
        this.machine = machine;
        this.memory = machine.lookup(MemorySystem.class).orElseThrow(
                () -> new IllegalArgumentException("the machine has no memory system for the device's BAR"));
        this.system = machine.lookup(AddressSpace.class).orElseThrow(
                () -> new IllegalArgumentException("the machine has no system address space for the device's BAR"));
        this.bar = memory.ioRegion(id + ".bar4", BAR_SIZE, NO_REGISTERS);
        this.mapping = new BarMapping(system.root(), bar);
    }

    /** Registers read as zero and ignore writes; kicks need no handling, the backends poll. */
    private static final IoHandler NO_REGISTERS = new IoHandler() {
        @Override
        public long read(long offset, int size) {
            return 0;
        }

        @Override
        public void write(long offset, long value, int size) {
        }
    };

    /**
     * Lays the device's queues out in its device memory and makes its vhost devs.
     *
     * @throws IllegalArgumentException if an option is bad or the machine set no memory aside
     */
    public static VhostDevice create(Kind kind, String id, MachineContext machine) {
        VhostOptions o = VhostOptions.parse(machine.options(), kind.defaultBackend());
        long need = kind.guestMemory(o);
        GuestRange area = machine.deviceMemory().orElseThrow(() -> new IllegalArgumentException(
                "the machine set no guest memory aside for the device's rings and buffers"));
        if (area.size() < need) {
            throw new IllegalArgumentException("the device needs " + need + " bytes of guest memory, got " + area.size());
        }
        VhostBackends backends = machine.shared(VhostBackends.class, VhostBackends::new);
        VhostDevice d = new VhostDevice(id, kind, o, machine);
        long cursor = area.address();
        int devCount = kind == Kind.NET ? o.queues() : 1;
        int queuesPerDev = kind == Kind.NET ? 2 : o.queues();
        for (int dev = 0; dev < devCount; dev++) {
            List<VirtQueue> queues = new ArrayList<>();
            for (int q = 0; q < queuesPerDev; q++) {
                boolean data = kind == Kind.BLK || q == 0; // net: rx receives data, tx only completes
                long used = cursor;
                cursor += o.ringBytes();
                GuestRange buffers = null;
                if (data) {
                    buffers = new GuestRange(cursor, o.bufferBytes());
                    cursor += buffers.size();
                }
                queues.add(new VirtQueue(q, o.queueSize(), used, buffers));
            }
            String name = id + (kind == Kind.NET ? ".qp" + dev : "");
            d.devs.add(new VhostDev(name, o.backend(), backends, o.logScan(), o.log(), queues));
            int[] used = new int[queuesPerDev];
            d.usedIdx.add(used);
            d.devRefs.add(new DevRef(queues.stream().map(q -> new QueueRef(q, used)).toList()));
        }
        int notifiers = 0;
        for (VhostDev dev : d.devs) {
            for (VirtQueue q : dev.queues()) {
                MemoryRegion n = d.memory.ioRegion(dev.name() + ".notify" + q.index(), 4, NO_REGISTERS);
                d.bar.addSubregion(NOTIFY_OFFSET + 4L * notifiers++, n);
            }
        }
        return d;
    }

    @Override
    public String id() {
        return id;
    }

    /** @return its kind */
    public Kind kind() {
        return kind;
    }

    /** @return its vhost devs */
    public List<VhostDev> devs() {
        return List.copyOf(devs);
    }

    @Override
    public List<MemoryListener> memoryListeners() {
        return List.copyOf(devs);
    }

    @Override
    public synchronized void start() {
        // A backend with nothing to write gets no thread: starting one per vhost dev would cost a
        // destination with hundreds of queues ~0.7 ms each of its downtime, for nothing.
        if (!threads.isEmpty() || options.rateMiBps() <= 0) {
            return;
        }
        double pagesPerSecond = options.rateMiBps() * 256 / devs.size();
        for (int i = 0; i < devs.size(); i++) {
            VhostWorker w = new VhostWorker(devs.get(i), pagesPerSecond, options.random(), seed * 31 + i, usedIdx.get(i));
            workers.add(w);
            threads.add(Thread.ofPlatform().name(devs.get(i).name()).daemon().start(w));
        }
    }

    /**
     * Stops the backend threads and waits for them.
     *
     * @throws IllegalStateException if a backend thread died, naming the dev and why
     */
    @Override
    public synchronized void stop() {
        workers.forEach(VhostWorker::requestStop);
        threads.forEach(LockSupport::unpark); // a parked worker sees its stop flag now
        boolean interrupted = false;
        for (Thread t : threads) {
            while (t.isAlive()) {
                try {
                    t.join();
                } catch (InterruptedException e) {
                    interrupted = true;
                }
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
        List<VhostWorker> stopped = List.copyOf(workers);
        workers.clear();
        threads.clear();
        for (int i = 0; i < stopped.size(); i++) {
            Throwable f = stopped.get(i).failure();
            if (f != null) {
                throw new IllegalStateException("device " + id + ": the backend of " + devs.get(i).name()
                        + " failed: " + f.getMessage(), f);
            }
        }
    }

    @Override
    public VMState<?> vmstate() {
        return VMState.of(kind == Kind.NET ? NET_VMSD : BLK_VMSD, this);
    }

    /** Firmware assigns BAR 4 and enables memory decoding. */
    @Override
    public synchronized void boot() {
        bar4 = machine.assignBar(BAR_SIZE);
        command |= BarMapping.PCI_COMMAND_MEMORY;
        mapping.update(command, bar4);
    }

    /**
     * After the state is in: map the BAR, then check every used ring against guest memory, read
     * through the address space as virtio's vring set-up reads it. Runs in the middle of the
     * destination's load, so it sees the topology loaded so far.
     */
    private void postLoad() {
        // One topology change, batched with the whole load on a destination that loads in one
        // transaction.
        mapping.update(command, bar4);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment idx = arena.allocate(2);
            for (int i = 0; i < devs.size(); i++) {
                for (VirtQueue q : devs.get(i).queues()) {
                    system.read(q.usedAddress() + 2, idx);
                    int inMemory = idx.get(ValueLayout.JAVA_SHORT_UNALIGNED, 0) & 0xffff;
                    int inState = usedIdx.get(i)[q.index()] & 0xffff;
                    if (inMemory != inState) {
                        throw new IllegalStateException("queue " + q.index() + " of " + devs.get(i).name()
                                + ": used index " + inMemory + " in guest memory, " + inState + " in the device state");
                    }
                }
            }
        } catch (IllegalArgumentException unmapped) {
            throw new IllegalStateException("a used ring is not in guest memory: " + unmapped.getMessage(), unmapped);
        }
    }

    /** @return where BAR 4 is mapped, or -1 */
    public long mappedAt() {
        return mapping.address();
    }

    @Override
    public Map<String, Long> statistics() {
        long dma = 0, used = 0, syncs = 0, scans = 0, marks = 0, scanNs = 0;
        for (VhostDev d : devs) {
            dma += d.dmaBytes();
            used += d.usedWrites();
            syncs += d.syncs();
            scans += d.sectionScans();
            marks += d.marksTaken();
            scanNs += d.scanNanos();
        }
        Map<String, Long> m = new LinkedHashMap<>();
        m.put("vhost-devs", (long) devs.size());
        m.put("dma-bytes", dma);
        m.put("used-writes", used);
        m.put("log-syncs", syncs);
        m.put("section-scans", scans);
        m.put("marks-taken", marks);
        m.put("section-scan-ns", scanNs);
        return m;
    }

    @Override
    public synchronized void close() {
        mapping.moveTo(BarMapping.UNMAPPED);
        devs.forEach(VhostDev::close);
    }

    @Override
    public String toString() {
        return kind.deviceName() + " " + id + " (" + devs.size() + " vhost devs, " + options.backend() + " backend)";
    }
}
