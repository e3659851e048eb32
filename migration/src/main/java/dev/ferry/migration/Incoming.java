package dev.ferry.migration;

import dev.ferry.api.Availability;
import dev.ferry.machine.AcceleratorProvider;
import dev.ferry.machine.Machine;
import dev.ferry.migration.channel.Connection;
import dev.ferry.migration.ram.RamLoader;
import dev.ferry.migration.stream.QemuFormat;
import dev.ferry.migration.stream.StreamException;
import dev.ferry.migration.stream.StreamReader;

import java.io.IOException;
import java.nio.channels.WritableByteChannel;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import java.util.Optional;

/**
 * The destination side of a migration (QEMU's qemu_loadvm_state and ram_load): builds the
 * machine the stream names, loads RAM and vCPU state, reports RAM digests on the return path,
 * and runs the guest once the source says GO. Everything read is checked before use; a bad
 * stream is rejected with the byte offset and the reason, and leaves nothing running.
 */
public final class Incoming {

    /** Longest configuration name accepted. */
    private static final int MAX_CONFIGURATION = 4096;

    private final Map<String, AcceleratorProvider> accelerators;
    private final long maxRamBytes;
    private final boolean preallocate;

    /**
     * @param accelerators the accelerators this host has, by name
     * @param maxRamBytes  refuse streams of bigger guests than this
     * @param preallocate  fault the destination's RAM in before loading (QEMU's -mem-prealloc)
     */
    public Incoming(Map<String, AcceleratorProvider> accelerators, long maxRamBytes, boolean preallocate) {
        this.accelerators = Map.copyOf(accelerators);
        this.maxRamBytes = maxRamBytes;
        this.preallocate = preallocate;
    }

    /**
     * What was received.
     *
     * @param machine   the destination machine, running the guest
     * @param bytes     stream bytes read
     * @param pages     pages loaded
     * @param verified  whether the source confirmed the RAM digests (false for a file)
     * @param loadNanos time from the first byte to the guest running
     */
    public record Result(Machine machine, long bytes, long pages, boolean verified, long loadNanos) {
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
            byte[][] vcpuStates = null;
            Map<Integer, String> sections = new HashMap<>();
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
                        ramLoader = new RamLoader(machine.memory().ramBlocks());
                        vcpuStates = new byte[machine.vcpus()][];
                        if (rp.isPresent()) {
                            ReturnPath.send(rp.get(), ReturnPath.READY, new byte[0]);
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
                        } else if ("cpu".equals(idstr) && type == QemuFormat.SECTION_FULL) {
                            if (instance < 0 || instance >= machine.vcpus() || vcpuStates[instance] != null) {
                                throw new StreamException(at, "unexpected state for vCPU " + instance);
                            }
                            if (sectionVersion != 1) {
                                throw new StreamException(at, "vCPU state version " + sectionVersion + ", expected 1");
                            }
                            sections.put(id, idstr);
                            // The state's size is fixed by the accelerator, which both sides share.
                            vcpuStates[instance] = in.getBytes(machine.vcpu(instance).saveState().length);
                        } else {
                            throw new StreamException(at, "unknown section '" + idstr + "' instance " + instance);
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
            for (int i = 0; i < vcpuStates.length; i++) {
                if (vcpuStates[i] == null) {
                    throw in.error("stream ends without the state of vCPU " + i);
                }
            }
            skipDescription(in, rp.isPresent());
            loadDeviceState(machine, vcpuStates, in);
            // The guest runs as soon as its state is in: downtime ends here. The source then checks
            // the RAM digests; on a mismatch it says ABORT, and this copy is stopped and dropped
            // while the source guest, stopped all along, takes over again.
            machine.start();
            boolean verified = false;
            if (rp.isPresent()) {
                ReturnPath.sendDigests(rp.get(), ramLoader.digests());
                int verdict = in.get8();
                if (verdict != ReturnPath.GO) {
                    machine.pause();
                    throw new IOException(verdict == ReturnPath.ABORT
                            ? "the source found the RAM digests differ; the guest here was stopped and discarded"
                            : "no verdict from the source; the guest here was stopped and discarded");
                }
                verified = true;
                ReturnPath.sendShut(rp.get(), true);
            }
            return new Result(machine, in.offset(), ramLoader.pagesLoaded(), verified, System.nanoTime() - start);
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
        return Machine.create(desc.config().withPreallocate(preallocate), accel);
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
     * Loads all non-iterable state inside one memory transaction (seed 003): whatever topology
     * changes loading makes are rendered and told to listeners once, at the commit.
     */
    private static void loadDeviceState(Machine machine, byte[][] vcpuStates, StreamReader in) throws StreamException {
        try {
            machine.memory().transaction(() -> {
                for (int i = 0; i < vcpuStates.length; i++) {
                    machine.vcpu(i).loadState(vcpuStates[i]);
                }
            });
        } catch (IllegalArgumentException e) {
            throw in.error("bad vCPU state: " + e.getMessage());
        }
    }

}
