package dev.ferry.vhost;

import dev.ferry.api.Device;
import dev.ferry.api.GuestRange;
import dev.ferry.api.MachineContext;
import dev.ferry.api.MemoryListener;

import java.io.DataInput;
import java.io.DataOutput;
import java.io.IOException;
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
 * <p>State (version 1): the used index of every queue, so the destination's backend would carry
 * on where the source stopped.
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

    private static final int VERSION = 1;

    private final String id;
    private final Kind kind;
    private final VhostOptions options;
    private final List<VhostDev> devs = new ArrayList<>();
    private final List<int[]> usedIdx = new ArrayList<>();
    private final List<VhostWorker> workers = new ArrayList<>();
    private final List<Thread> threads = new ArrayList<>();
    private final long seed;

    private VhostDevice(String id, Kind kind, VhostOptions options) {
        this.id = id;
        this.kind = kind;
        this.options = options;
        this.seed = id.hashCode();
    }

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
        VhostDevice d = new VhostDevice(id, kind, o);
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
            d.usedIdx.add(new int[queuesPerDev]);
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
        if (!threads.isEmpty()) {
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
    public int version() {
        return VERSION;
    }

    @Override
    public synchronized void save(DataOutput out) throws IOException {
        out.writeInt(usedIdx.size());
        for (int[] q : usedIdx) {
            out.writeInt(q.length);
            for (int idx : q) {
                out.writeShort(idx);
            }
        }
    }

    @Override
    public synchronized void load(DataInput in, int version) throws IOException {
        if (version != VERSION) {
            throw new IOException("device " + id + ": state version " + version + ", this Ferry reads " + VERSION);
        }
        int n = in.readInt();
        if (n != usedIdx.size()) {
            throw new IOException("device " + id + ": state for " + n + " vhost devs, this device has " + usedIdx.size());
        }
        List<int[]> loaded = new ArrayList<>();
        for (int[] q : usedIdx) {
            int m = in.readInt();
            if (m != q.length) {
                throw new IOException("device " + id + ": state for " + m + " queues, a vhost dev here has " + q.length);
            }
            int[] v = new int[m];
            for (int i = 0; i < m; i++) {
                v[i] = in.readUnsignedShort();
            }
            loaded.add(v);
        }
        // Only now: a malformed state changes nothing.
        for (int i = 0; i < loaded.size(); i++) {
            System.arraycopy(loaded.get(i), 0, usedIdx.get(i), 0, loaded.get(i).length);
        }
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
    public void close() {
        devs.forEach(VhostDev::close);
    }

    @Override
    public String toString() {
        return kind.deviceName() + " " + id + " (" + devs.size() + " vhost devs, " + options.backend() + " backend)";
    }
}
