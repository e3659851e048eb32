package dev.ferry.migration;

import dev.ferry.api.Availability;
import dev.ferry.api.Device;
import dev.ferry.api.DeviceProvider;
import dev.ferry.api.Options;
import dev.ferry.machine.AcceleratorProvider;
import dev.ferry.machine.Machine;
import dev.ferry.machine.MachineConfig;
import dev.ferry.machine.MemoryBackend;
import dev.ferry.memory.MemorySystem;
import dev.ferry.migration.bootstrap.Bootstrap;
import dev.ferry.migration.bootstrap.DeviceRequest;
import dev.ferry.migration.channel.Connection;
import dev.ferry.migration.ram.RamLoader;
import dev.ferry.migration.stream.QemuFormat;
import dev.ferry.migration.stream.StreamException;
import dev.ferry.migration.stream.StreamReader;
import dev.ferry.vmstate.VMStateException;
import dev.ferry.vmstate.VMStateLoader;

import java.io.IOException;
import java.nio.channels.WritableByteChannel;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * The destination side of a migration (QEMU's qemu_loadvm_state and ram_load): builds the
 * machine the stream names and plugs its devices (not booted: they wait for their state), loads
 * RAM, then vCPU and device state, reports RAM digests on the return path, and runs the guest
 * once the source says GO. Everything read is checked before use; a bad stream is rejected with
 * the byte offset and the reason, and leaves nothing running.
 *
 * <p>Device state (seed 003): every device section is read and checked first, then all are
 * applied inside one memory transaction, so the BARs and regions their post-loads map cost one
 * flat-view render and one listener pass in all. Post-loads that read guest memory through the
 * address space see the topology loaded so far ({@link dev.ferry.memory.AddressSpace#read}).
 * {@link DeviceLoad#PER_DEVICE} applies each device in a transaction of its own instead, for
 * comparison: a commit per device, as QEMU does.
 *
 * <p>A destination told its guest's RAM size beforehand ({@link #prepareRam}) allocates that RAM
 * and faults it in while it waits, as QEMU's destination started with {@code -m} and
 * {@code -mem-prealloc}: the migration then writes into memory that is already there. Otherwise
 * the RAM is made when the stream names the machine, and faulted in behind the loader.
 */
public final class Incoming implements AutoCloseable {

    /** Longest configuration name accepted: the machine and up to a few hundred devices. */
    private static final int MAX_CONFIGURATION = 64 << 10;

    /** How device state is applied. */
    public enum DeviceLoad {
        /** All devices in one memory transaction: one commit for the whole load. */
        BATCHED,
        /** Each device in a transaction of its own: a commit per device. */
        PER_DEVICE;

        /** @return the value for a command-line word: batched or per-device */
        public static DeviceLoad parse(String s) {
            return switch (s) {
                case "batched" -> BATCHED;
                case "per-device" -> PER_DEVICE;
                default -> throw new IllegalArgumentException("must be batched or per-device, got '" + s + "'");
            };
        }

        @Override
        public String toString() {
            return this == BATCHED ? "batched" : "per-device";
        }
    }

    /**
     * What loading the non-iterable state cost.
     *
     * @param mode          how it was applied
     * @param sections      device sections loaded (vCPUs included)
     * @param nanos         time from the first apply to the last commit
     * @param cpuNanos      CPU time the loading thread spent in it: the load's cost without the time
     *                      other threads (the guest, the source on the same host) took the core
     * @param commits       topology commits it made
     * @param renders       flat views it rendered
     * @param listenerCalls listener callbacks its commits made
     */
    public record DeviceLoadStats(DeviceLoad mode, int sections, long nanos, long cpuNanos, long commits,
                                  long renders, long listenerCalls) {
        /** @return one line for a summary */
        public String summary() {
            return String.format("%d sections %s in %.1f ms (%.1f ms CPU): %d topology commit%s, %d flat-view "
                    + "render%s, %d listener calls", sections, mode, nanos / 1e6, cpuNanos / 1e6, commits,
                    commits == 1 ? "" : "s", renders, renders == 1 ? "" : "s", listenerCalls);
        }
    }

    private final Map<String, AcceleratorProvider> accelerators;
    private final Map<String, DeviceProvider> devices;
    private final long maxRamBytes;
    private final boolean preallocate;
    private final DeviceLoad deviceLoad;
    /** The RAM size {@link #prepareRam} was told; 0 if it was not. */
    private long preparedSize;
    /** RAM made for the next stream, until a machine takes it. */
    private MemoryBackend prepared;

    /**
     * @param accelerators the accelerators this host has, by name
     * @param devices      the device types this host has, by name
     * @param maxRamBytes  refuse streams of bigger guests than this
     * @param preallocate  fault the destination's RAM in (QEMU's -mem-prealloc), on a thread of its
     *                     own while the stream loads
     * @param deviceLoad   how device state is applied
     */
    public Incoming(Map<String, AcceleratorProvider> accelerators, Map<String, DeviceProvider> devices,
                    long maxRamBytes, boolean preallocate, DeviceLoad deviceLoad) {
        this.accelerators = Map.copyOf(accelerators);
        this.devices = Map.copyOf(devices);
        this.maxRamBytes = maxRamBytes;
        this.preallocate = preallocate;
        this.deviceLoad = deviceLoad;
    }

    /**
     * Makes the RAM of a guest of {@code ramSize} bytes now, and with preallocation faults it in
     * on a thread of its own while this destination waits for the source. From here on a stream
     * for a guest of another size is refused; after a failed attempt the RAM is made again for
     * the next. {@link #close()} frees what no stream took.
     *
     * @return the RAM made, for waiting on its preallocation and reading its cost; this
     *         destination keeps owning it
     * @throws IllegalArgumentException if the host cannot hold it, or RAM was prepared already
     */
    public synchronized MemoryBackend prepareRam(long ramSize) {
        if (preparedSize != 0) {
            throw new IllegalArgumentException("RAM was prepared already, for a guest of " + preparedSize + " bytes");
        }
        if (ramSize > maxRamBytes) {
            throw new IllegalArgumentException("a guest of " + ramSize + " bytes is more than this destination accepts ("
                    + maxRamBytes + ")");
        }
        prepared = makeRam(ramSize);
        preparedSize = ramSize;
        return prepared;
    }

    private MemoryBackend makeRam(long ramSize) {
        MemoryBackend backend = MemoryBackend.memfd(ramSize);
        return preallocate ? backend.preallocateInBackground() : backend;
    }

    /** @return whether RAM made beforehand ({@link #prepareRam}) waits for the next stream */
    public synchronized boolean ramPrepared() {
        return prepared != null;
    }

    /** The RAM prepared for this stream, if any; the machine built on it owns it. */
    private synchronized MemoryBackend takePrepared() {
        MemoryBackend b = prepared;
        prepared = null;
        return b;
    }

    /** After a failed attempt: RAM again for the next, if this destination was told its size. */
    private synchronized void prepareAgain() {
        if (preparedSize != 0 && prepared == null) {
            try {
                prepared = makeRam(preparedSize);
            } catch (RuntimeException hostShort) {
                // The next stream's machine then makes its own, and says why if it cannot.
            }
        }
    }

    /** Frees RAM prepared for a stream that never came. */
    @Override
    public synchronized void close() {
        if (prepared != null) {
            prepared.close();
            prepared = null;
        }
    }

    /**
     * What was received.
     *
     * @param machine   the destination machine, running the guest
     * @param bytes     stream bytes read
     * @param pages     pages loaded
     * @param verification how the RAM was proven to be the source's
     * @param loadNanos time from the first byte to the guest running
     * @param deviceLoad what loading the device state cost
     */
    public record Result(Machine machine, long bytes, long pages, Verification verification, long loadNanos,
                         DeviceLoadStats deviceLoad) {
        /** @return whether the loaded RAM is proven to be the source's */
        public boolean verified() {
            return verification != Verification.NONE;
        }
    }

    /** How the loaded RAM was proven to be the source's. */
    public enum Verification {
        /** The source compared its digests with the destination's over the return path, and said GO. */
        BY_SOURCE,
        /** The stream carried the source's digests (a saved guest), and the loaded RAM matches them. */
        BY_SAVED_DIGESTS,
        /** Neither: a file saved without digests (by QEMU, say). */
        NONE
    }

    /** A device section read and checked, waiting to be applied; {@code at} is where its section began. */
    private record PendingState(Device device, VMStateLoader.Pending pending, long at) {
    }

    /**
     * Receives one migration.
     *
     * @throws StreamException if the stream is malformed, truncated or hostile
     * @throws IOException     if the connection fails, or the source aborts
     */
    public Result receive(Connection connection) throws IOException {
        long start = System.nanoTime();
        StreamReader in = new StreamReader(connection.streamIn());
        Optional<WritableByteChannel> rp = connection.returnOut();
        Machine machine = null;
        try {
            int magic = in.get32();
            if (magic != QemuFormat.FILE_MAGIC) {
                throw new StreamException(0, String.format("bad magic 0x%08x, expected 0x%08x (QEVM): not a migration stream",
                        magic, QemuFormat.FILE_MAGIC));
            }
            int version = in.get32();
            if (version != QemuFormat.FILE_VERSION) {
                throw new StreamException(4, "unsupported stream version " + version + ", expected 3");
            }
            RamLoader ramLoader = null;
            Map<String, DeviceSections> bySection = null;
            List<PendingState> states = new ArrayList<>();
            Map<Integer, String> sections = new HashMap<>();
            IntegritySection integrity = null;
            long integrityAt = 0;
            loop:
            while (true) {
                long at = in.offset();
                int type = in.get8();
                switch (type) {
                    case QemuFormat.EOF -> {
                        break loop;
                    }
                    case QemuFormat.CONFIGURATION -> {
                        if (machine != null) {
                            throw new StreamException(at, "a second configuration section");
                        }
                        machine = createMachine(in, at);
                        ramLoader = new RamLoader(machine.memory().ramBlocks(),
                                Map.of(Machine.RAM_NAME, machine.accelerator().reservedRamBytes()));
                        bySection = sectionsOf(machine);
                        if (rp.isPresent()) {
                            ReturnPath.send(rp.get(), ReturnPath.READY, new byte[0]);
                        }
                        if (preallocate) {
                            // Off the critical path: RAM is faulted in behind the loader, not
                            // before READY, where it held the source in setup ~1.4 s per GiB here.
                            machine.preallocateInBackground();
                        }
                    }
                    case QemuFormat.SECTION_START, QemuFormat.SECTION_FULL -> {
                        if (machine == null) {
                            throw new StreamException(at, "section before the configuration");
                        }
                        int id = in.get32();
                        String idstr = in.getString8();
                        int instance = in.get32();
                        int sectionVersion = in.get32();
                        if (sections.containsKey(id)) {
                            throw new StreamException(at, "section id " + id + " started twice");
                        }
                        if (QemuFormat.RAM_SECTION.equals(idstr) && type == QemuFormat.SECTION_START && instance == 0) {
                            if (sectionVersion != QemuFormat.RAM_VERSION) {
                                throw new StreamException(at, "RAM section version " + sectionVersion + ", expected 4");
                            }
                            sections.put(id, idstr);
                            ramLoader.load(in);
                        } else if (type == QemuFormat.SECTION_FULL && IntegritySection.IDSTR.equals(idstr)
                                && instance == 0) {
                            if (integrity != null) {
                                throw new StreamException(at, "a second integrity section");
                            }
                            sections.put(id, idstr);
                            integrity = IntegritySection.empty();
                            integrityAt = at;
                            try {
                                VMStateLoader.read(in, integrity.vmstate(), sectionVersion).apply();
                            } catch (VMStateException e) {
                                throw new StreamException(at, "integrity section: " + e.getMessage());
                            }
                        } else if (type == QemuFormat.SECTION_FULL && bySection.containsKey(key(idstr, instance))) {
                            Device d = bySection.remove(key(idstr, instance)).device();
                            sections.put(id, idstr);
                            try {
                                states.add(new PendingState(d, VMStateLoader.read(in, d.vmstate(), sectionVersion), at));
                            } catch (VMStateException e) {
                                throw new StreamException(at, "device " + d.id() + ": " + e.getMessage());
                            }
                        } else {
                            throw new StreamException(at, "unknown section '" + idstr + "' instance " + instance
                                    + (type == QemuFormat.SECTION_FULL ? " (no such device here, or sent twice)" : ""));
                        }
                        footer(in, id);
                    }
                    case QemuFormat.SECTION_PART, QemuFormat.SECTION_END -> {
                        int id = in.get32();
                        if (!QemuFormat.RAM_SECTION.equals(sections.get(id))) {
                            throw new StreamException(at, "part of unknown section id " + id);
                        }
                        ramLoader.load(in);
                        footer(in, id);
                    }
                    default -> throw new StreamException(at, "unknown section type 0x" + Integer.toHexString(type));
                }
            }
            if (machine == null) {
                throw in.error("stream ends without a configuration");
            }
            if (!bySection.isEmpty()) {
                throw in.error("stream ends without the state of " + bySection.values().iterator().next().what());
            }
            Verification verification = Verification.NONE;
            if (integrity != null) {
                Optional<String> bad = integrity.check(ramLoader.digests());
                if (bad.isPresent()) {
                    throw new StreamException(integrityAt, "the saved guest fails its integrity check: " + bad.get());
                }
                verification = Verification.BY_SAVED_DIGESTS;
            }
            skipDescription(in, rp.isPresent());
            DeviceLoadStats loadStats = loadDeviceState(machine.memory(), states);
            // The guest runs as soon as its state is in: downtime ends here. The source then checks
            // the RAM digests; on a mismatch it says ABORT, and this copy is stopped and dropped
            // while the source guest, stopped all along, takes over again.
            machine.start();
            if (rp.isPresent()) {
                ReturnPath.sendDigests(rp.get(), ramLoader.digests());
                int verdict = in.get8();
                if (verdict != ReturnPath.GO) {
                    machine.pause();
                    throw new IOException(verdict == ReturnPath.ABORT
                            ? "the source found the RAM digests differ; the guest here was stopped and discarded"
                            : "no verdict from the source; the guest here was stopped and discarded");
                }
                verification = Verification.BY_SOURCE;
                try {
                    ReturnPath.sendShut(rp.get(), true);
                } catch (IOException sourceGone) {
                    // After GO the guest is this side's, and the source never runs it again: a
                    // source that went away since must not cost the only running copy.
                }
            }
            return new Result(machine, in.offset(), ramLoader.pagesLoaded(), verification, System.nanoTime() - start,
                    loadStats);
        } catch (IOException | RuntimeException e) {
            if (rp.isPresent()) {
                try {
                    ReturnPath.sendError(rp.get(), e.getMessage() == null ? e.toString() : e.getMessage());
                    ReturnPath.sendShut(rp.get(), false);
                } catch (IOException ignored) {
                    // The source may be gone already; the error is reported here either way.
                }
            }
            if (machine != null) {
                machine.close();
            }
            prepareAgain();
            if (e instanceof RuntimeException r && !(e instanceof IllegalArgumentException)) {
                throw new IOException(r.getMessage(), r);
            }
            throw e instanceof IllegalArgumentException iae ? new StreamException(in.offset(), iae.getMessage())
                    : (IOException) e;
        }
    }

    private Machine createMachine(StreamReader in, long at) throws IOException {
        int len = in.get32();
        if (len <= 0 || len > MAX_CONFIGURATION) {
            throw new StreamException(at, "configuration name of " + Integer.toUnsignedString(len) + " bytes");
        }
        String name = new String(in.getBytes(len), StandardCharsets.US_ASCII);
        MachineDescription desc;
        try {
            desc = MachineDescription.decode(name);
        } catch (IllegalArgumentException e) {
            throw new StreamException(at, e.getMessage());
        }
        long preparedFor = preparedSize();
        if (preparedFor != 0 && desc.config().ramSize() != preparedFor) {
            throw new StreamException(at, "the source guest has " + (desc.config().ramSize() >> 20) + " MiB of RAM, "
                    + "and this destination was started for a guest of " + (preparedFor >> 20) + " MiB (incoming "
                    + "--mem): give it the source's size, or leave --mem out");
        }
        if (desc.config().ramSize() > maxRamBytes) {
            throw new StreamException(at, "the source guest has " + desc.config().ramSize()
                    + " bytes of RAM, more than this destination accepts (" + maxRamBytes + ")");
        }
        AcceleratorProvider accel = accelerators.get(desc.accelerator());
        if (accel == null) {
            throw new StreamException(at, "the source runs accelerator '" + desc.accelerator() + "', which this host lacks");
        }
        Availability a = accel.probe();
        if (!a.available()) {
            throw new StreamException(at, "the source runs accelerator " + desc.accelerator()
                    + ", not available here: " + a.reason());
        }
        List<DeviceRequest> requests = new ArrayList<>();
        for (MachineDescription.Device d : desc.devices()) {
            DeviceProvider p = devices.get(d.type());
            if (p == null) {
                throw new StreamException(at, "the source has device " + d.id() + " of type '" + d.type()
                        + "', which this host lacks");
            }
            Availability pa = p.probe();
            if (!pa.available()) {
                throw new StreamException(at, "the source has device " + d.id() + " of type " + d.type()
                        + ", not available here: " + pa.reason());
            }
            Options options = Options.of(d.options());
            try {
                options.requireOnly(p.optionNames(), "device " + d.id(), "the source and this host disagree");
                requests.add(new DeviceRequest(p, d.id(), options, p.guestMemory(options)));
            } catch (IllegalArgumentException e) {
                throw new StreamException(at, "device " + d.id() + ": " + e.getMessage());
            }
        }
        Machine machine;
        try {
            // Refuses, among bad configurations, a guest bigger than this host can hold. RAM made
            // beforehand is faulted in already (or on its way); otherwise preallocation, if asked
            // for, starts once the source has heard READY.
            MemoryBackend backend = takePrepared();
            MachineConfig config = desc.config().withPreallocate(false);
            machine = backend == null ? Machine.create(config, accel) : Machine.create(config, accel, backend);
        } catch (IllegalArgumentException e) {
            throw new StreamException(at, "the source's machine cannot be built here: " + e.getMessage());
        }
        try {
            Bootstrap.plugDevices(machine, requests, false);
        } catch (RuntimeException e) {
            machine.close();
            throw new StreamException(at, e.getMessage());
        }
        return machine;
    }

    private synchronized long preparedSize() {
        return preparedSize;
    }

    /** The vCPUs and devices by section, named and numbered as the source numbered them. */
    private static Map<String, DeviceSections> sectionsOf(Machine machine) {
        Map<String, DeviceSections> out = new LinkedHashMap<>();
        for (DeviceSections s : DeviceSections.of(machine)) {
            out.put(key(s.idstr(), s.instance()), s);
        }
        return out;
    }

    private static String key(String idstr, int instance) {
        return idstr + "\0" + instance;
    }

    private static void footer(StreamReader in, int id) throws IOException {
        long at = in.offset();
        int type = in.get8();
        if (type != QemuFormat.SECTION_FOOTER) {
            throw new StreamException(at, "missing section footer for section " + id);
        }
        int got = in.get32();
        if (got != id) {
            throw new StreamException(at, "section footer for " + got + " closes section " + id);
        }
    }

    private static void skipDescription(StreamReader in, boolean mustFollow) throws IOException {
        // The JSON description is optional for a loader (QEMU skips it too); over a socket it
        // always comes, since the verdict follows it.
        if (!mustFollow) {
            long at = in.offset();
            int type;
            try {
                type = in.get8();
            } catch (StreamException endOfFile) {
                if (endOfFile.offset() == at) {
                    // A stream that ends right after EOF has no description: fine.
                    return;
                }
                throw endOfFile;
            }
            // Anything else after EOF must be a whole, sane description: a file cut inside it,
            // or ending in something else, is damaged.
            readDescription(in, at, type);
            return;
        }
        long at = in.offset();
        readDescription(in, at, in.get8());
    }

    private static void readDescription(StreamReader in, long at, int type) throws IOException {
        if (type != QemuFormat.VMDESCRIPTION) {
            throw new StreamException(at, "unexpected byte 0x" + Integer.toHexString(type) + " after the end of the stream");
        }
        int len = in.get32();
        if (len < 0 || len > QemuFormat.MAX_VMDESCRIPTION) {
            throw new StreamException(at, "VM description of " + Integer.toUnsignedString(len) + " bytes");
        }
        in.skip(len);
    }

    /**
     * Applies the device state read and checked: inside one memory transaction (seed 003), or
     * one per device for comparison.
     */
    private DeviceLoadStats loadDeviceState(MemorySystem memory, List<PendingState> states) throws StreamException {
        long commits = memory.topologyCommits();
        long renders = memory.flatViewRenders();
        long calls = memory.listenerCalls();
        java.lang.management.ThreadMXBean threads = java.lang.management.ManagementFactory.getThreadMXBean();
        long cpu = threads.getCurrentThreadCpuTime();
        long start = System.nanoTime();
        if (deviceLoad == DeviceLoad.BATCHED) {
            memory.begin();
            try {
                for (PendingState s : states) {
                    apply(s);
                }
            } finally {
                memory.commit();
            }
        } else {
            for (PendingState s : states) {
                memory.begin();
                try {
                    apply(s);
                } finally {
                    memory.commit();
                }
            }
        }
        return new DeviceLoadStats(deviceLoad, states.size(), System.nanoTime() - start,
                threads.getCurrentThreadCpuTime() - cpu, memory.topologyCommits() - commits,
                memory.flatViewRenders() - renders, memory.listenerCalls() - calls);
    }

    /** A state its device refuses is a bad stream: it names the section that carried it. */
    private static void apply(PendingState s) throws StreamException {
        try {
            s.pending().apply();
        } catch (VMStateException e) {
            StreamException x = new StreamException(s.at(), "device " + s.device().id() + " refused its state: "
                    + e.getMessage());
            x.initCause(e);
            throw x;
        }
    }
}
