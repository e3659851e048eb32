package dev.ferry.migration.stream;

import com.fasterxml.jackson.databind.JsonNode;
import dev.ferry.api.Device;
import dev.ferry.api.DeviceProvider;
import dev.ferry.api.MachineContext;
import dev.ferry.api.Options;
import dev.ferry.api.vmstate.VMState;
import dev.ferry.api.vmstate.VMStateDescription;
import dev.ferry.api.vmstate.VMStateField.Count;
import dev.ferry.api.vmstate.VMStateType;
import dev.ferry.machine.MachineConfig;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import dev.ferry.migration.Migration;
import dev.ferry.migration.MigrationParameters;
import dev.ferry.migration.MigrationStats;
import dev.ferry.migration.MigrationStatus;
import dev.ferry.migration.bootstrap.Bootstrap;
import dev.ferry.migration.bootstrap.DeviceRequest;
import dev.ferry.migration.bootstrap.TrackedMachine;
import dev.ferry.migration.channel.Channels;
import dev.ferry.migration.channel.Connection;
import dev.ferry.migration.channel.MigrationUri;
import dev.ferry.vmstate.AnalyzerWalk;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayInputStream;
import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * A saved stream is QEMU's format, byte for byte where QEMU defines it: walked here by a parser
 * of its own, independent of Incoming, the way scripts/analyze-migration.py walks it. Device
 * sections are read with nothing but the JSON description at the end of the file, as the
 * analyzer reads them.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class SavedStreamFormatTest {

    private static final long RAM = 16L << 20;

    @TempDir
    Path dir;

    @Test
    void aSavedFileIsAQemuStream() throws Exception {
        Bootstrap b = Bootstrap.create();
        Workload w = new Workload(Pattern.SEQUENTIAL, 0, 0, 20, 4096, 0.1, 0.9, 3);
        Path file = dir.resolve("saved.mig");
        MigrationStats stats;
        try (TrackedMachine tm = b.build(b.plan("soft", "soft", Map.of()),
                MachineConfig.of(RAM, 2, w).withPreallocate(false),
                List.of(new DeviceRequest(new TestDeviceProvider(), "test-dev0", Options.empty(), 0)))) {
            tm.machine().start();
            long target = tm.machine().pagesWritten() + 700;
            while (tm.machine().pagesWritten() < target) {
                Thread.sleep(1);
            }
            try (Connection c = Channels.connect(MigrationUri.parse("file:" + file))) {
                stats = new Migration(tm, c, MigrationParameters.defaults().withTimeout(Duration.ofSeconds(30)))
                        .run(s -> {
                        });
            }
        }
        assertEquals(MigrationStatus.COMPLETED, stats.status(), stats.error());
        byte[] bytes = Files.readAllBytes(file);
        assertEquals(stats.transferred(), bytes.length);
        Walk walk = walk(bytes);
        assertTrue(walk.config.startsWith("ferry:accel=soft,mem=16777216,vcpus=2,workload=sequential,"), walk.config);
        assertEquals(stats.normal(), walk.fullPages);
        assertEquals(stats.duplicate(), walk.zeroPages);
        assertTrue(walk.parts >= 1, "at least one PART");
        assertEquals(List.of("cpu 0", "cpu 1", "test-dev 0", "ferry-integrity 0"), List.copyOf(walk.sections.keySet()));
        // The saved guest's proof: the source's digest of each RAM block, readable as any device's state.
        Map<String, Object> integrity = walk.sections.get("ferry-integrity 0");
        assertEquals(1L, integrity.get("blocks"));
        // One block: one digest, which the description lists as a scalar (QEMU omits array_len of 1).
        assertInstanceOf(Long.class, integrity.get("digests"));
        assertEquals("pc.ram", new String((byte[]) integrity.get("names"), java.nio.charset.StandardCharsets.UTF_8));
        assertEquals(24, ((byte[]) walk.sections.get("cpu 1").get("state")).length);
        Map<String, Object> dev = walk.sections.get("test-dev 0");
        assertEquals(3L, dev.get("nvqs"));
        // Elements differ (one sent a subsection): one entry per element, as QEMU lists them.
        assertEquals(101L, ((Map<?, ?>) dev.get("vqs[1]")).get("idx"));
        assertEquals(false, ((Map<?, ?>) dev.get("vqs[2]")).get("enabled"));
        assertEquals(77L, ((Map<?, ?>) ((Map<?, ?>) dev.get("vqs[1]")).get("vq/inflight")).get("inflight"));
        assertArrayEquals(new byte[] {0x52, 0x54, 0, 0x12, 0x34, 0x56}, (byte[]) dev.get("mac"));
        assertEquals(List.of(1L, 0xdead_beefL, 3L), dev.get("regs"));
        assertEquals(0x1_0000_0001L, ((Map<?, ?>) dev.get("test-dev/features")).get("features"));
        assertTrue(walk.json.contains("\"page_size\": 4096"), walk.json);
        assertTrue(walk.json.contains("\"vmsd_name\": \"test-dev\", \"version\": 2"), walk.json);
        assertTrue(walk.json.startsWith("{") && walk.json.strip().endsWith("}"), walk.json);
        assertEquals(count(walk.json, "{"), count(walk.json, "}"));
        assertEquals(count(walk.json, "["), count(walk.json, "]"));
        // analyze-migration.py finds the JSON after the last NUL: none inside, no '{' in its length.
        assertFalse(walk.json.contains("\0"));
        for (int shift = 0; shift < 32; shift += 8) {
            assertFalse(((walk.json.length() >>> shift) & 0xff) == '{', "length byte looks like '{'");
        }
    }

    /** A device with a struct array, a buffer, an array and subsections, to read back from the JSON. */
    static final class TestDevice implements Device {
        static final class Queue {
            int idx;
            boolean enabled;
            long inflight;
        }

        static final VMStateDescription<Queue> VQ = VMStateDescription.<Queue>builder("vq")
                .uint16("idx", q -> q.idx, (q, v) -> q.idx = (int) v)
                .bool("enabled", q -> q.enabled, (q, v) -> q.enabled = v)
                .subsection(VMStateDescription.<Queue>builder("vq/inflight")
                        .uint64("inflight", q -> q.inflight, (q, v) -> q.inflight = v).build(), q -> q.inflight != 0)
                .build();

        static final VMStateDescription<TestDevice> VMSD = VMStateDescription.<TestDevice>builder("test-dev")
                .version(2)
                .uint32Equal("nvqs", d -> d.queues.size())
                .structArray("vqs", VQ, Count.from("nvqs", 8), d -> d.queues)
                .buffer("mac", Count.of(6), d -> d.mac, (d, v) -> d.mac = v)
                .array("regs", VMStateType.UINT32, Count.of(3), d -> d.regs, (d, v) -> d.regs = v)
                .subsection(VMStateDescription.<TestDevice>builder("test-dev/features")
                        .uint64("features", d -> d.features, (d, v) -> d.features = v).build(), d -> d.features != 0)
                .build();

        final List<Queue> queues = new ArrayList<>();
        byte[] mac = {0x52, 0x54, 0, 0x12, 0x34, 0x56};
        long[] regs = {1, 0xdead_beefL, 3};
        long features = 0x1_0000_0001L;

        TestDevice() {
            for (int i = 0; i < 3; i++) {
                Queue q = new Queue();
                q.idx = 100 + i;
                q.enabled = i != 2;
                q.inflight = i == 1 ? 77 : 0;
                queues.add(q);
            }
        }

        @Override
        public String id() {
            return "test-dev0";
        }

        @Override
        public VMState<?> vmstate() {
            return VMState.of(VMSD, this);
        }
    }

    static final class TestDeviceProvider implements DeviceProvider {
        @Override
        public String name() {
            return "test-dev";
        }

        @Override
        public String description() {
            return "a device with state of every shape";
        }

        @Override
        public Device create(String id, MachineContext machine) {
            return new TestDevice();
        }
    }

    private static int count(String s, String what) {
        int n = 0;
        for (int i = s.indexOf(what); i >= 0; i = s.indexOf(what, i + 1)) {
            n++;
        }
        return n;
    }

    private static final class Walk {
        String config;
        long fullPages;
        long zeroPages;
        int parts;
        final Map<String, Map<String, Object>> sections = new LinkedHashMap<>();
        String json;
    }

    /** Finds the JSON the way analyze-migration.py does: the first '{' after the last NUL byte. */
    private static String findJson(byte[] bytes) {
        int nul = bytes.length - 1;
        while (nul >= 0 && bytes[nul] != 0) {
            nul--;
        }
        int brace = nul + 1;
        while (bytes[brace] != '{') {
            brace++;
        }
        assertEquals(0x06, bytes[brace - 5], "QEMU_VM_VMDESCRIPTION right before the JSON's length");
        int len = ByteBuffer.wrap(bytes, brace - 4, 4).getInt();
        return new String(bytes, brace, len, StandardCharsets.UTF_8);
    }

    private static Walk walk(byte[] bytes) throws IOException {
        DataInputStream in = new DataInputStream(new ByteArrayInputStream(bytes));
        Walk w = new Walk();
        Map<String, JsonNode> descriptions = new LinkedHashMap<>();
        for (JsonNode d : AnalyzerWalk.parse(findJson(bytes)).get("devices")) {
            descriptions.put(d.get("name").asText() + " " + d.get("instance_id").asInt(), d);
        }
        byte[] magic = new byte[4];
        in.readFully(magic);
        assertArrayEquals("QEVM".getBytes(StandardCharsets.US_ASCII), magic);
        assertEquals(3, in.readInt(), "QEMU_VM_FILE_VERSION");
        assertEquals(0x07, in.readUnsignedByte(), "QEMU_VM_CONFIGURATION");
        byte[] name = new byte[in.readInt()];
        in.readFully(name);
        w.config = new String(name, StandardCharsets.US_ASCII);

        // The RAM section's START: block list, EOS, footer.
        assertEquals(0x01, in.readUnsignedByte(), "QEMU_VM_SECTION_START");
        assertEquals(0, in.readInt(), "section id");
        assertEquals("ram", str8(in));
        assertEquals(0, in.readInt(), "instance");
        assertEquals(4, in.readInt(), "ram version");
        long memSize = in.readLong();
        assertEquals(0x04, memSize & 0xfff, "RAM_SAVE_FLAG_MEM_SIZE");
        assertEquals(RAM, memSize & ~0xfffL);
        assertEquals("pc.ram", str8(in));
        assertEquals(RAM, in.readLong(), "block size (used_length)");
        assertEquals(0x10, in.readLong(), "RAM_SAVE_FLAG_EOS");
        footer(in, 0);

        boolean ramEnded = false;
        while (true) {
            int type = in.readUnsignedByte();
            if (type == 0x00) {
                break; // QEMU_VM_EOF
            }
            switch (type) {
                case 0x02, 0x03 -> {
                    assertFalse(ramEnded, "no RAM after END");
                    assertEquals(0, in.readInt());
                    ramPages(in, w);
                    footer(in, 0);
                    if (type == 0x03) {
                        ramEnded = true;
                    } else {
                        w.parts++;
                    }
                }
                case 0x04 -> {
                    assertTrue(ramEnded, "device state after the RAM section ended");
                    int id = in.readInt();
                    String key = str8(in) + " " + in.readInt();
                    JsonNode desc = descriptions.get(key);
                    assertTrue(desc != null, "the JSON describes section " + key);
                    assertEquals(desc.get("version").asInt(), in.readInt(), "section version");
                    w.sections.put(key, AnalyzerWalk.read(desc, in));
                    footer(in, id);
                    assertEquals(w.sections.size(), id, "sections are numbered in order");
                }
                default -> fail("unexpected section type 0x" + Integer.toHexString(type));
            }
        }
        assertTrue(ramEnded);
        assertEquals(0x06, in.readUnsignedByte(), "QEMU_VM_VMDESCRIPTION");
        int len = in.readInt();
        byte[] json = new byte[len];
        in.readFully(json);
        w.json = new String(json, StandardCharsets.UTF_8);
        try {
            in.readUnsignedByte();
            fail("bytes after the description");
        } catch (EOFException expected) {
            // The file ends with the description.
        }
        return w;
    }

    private static void ramPages(DataInputStream in, Walk w) throws IOException {
        boolean first = true;
        while (true) {
            long header = in.readLong();
            int flags = (int) (header & 0xfff);
            long offset = header & ~0xfffL;
            if (flags == 0x10) {
                assertEquals(0, offset);
                return;
            }
            assertTrue(offset < RAM && offset >= 0, "offset 0x" + Long.toHexString(offset));
            boolean cont = (flags & 0x20) != 0;
            if (first) {
                assertFalse(cont, "the first page of a part names its block");
            }
            if (!cont) {
                assertEquals("pc.ram", str8(in));
            }
            switch (flags & ~0x20) {
                case 0x02 -> {
                    assertEquals(0, in.readUnsignedByte(), "zero page fill byte");
                    w.zeroPages++;
                }
                case 0x08 -> {
                    in.readFully(new byte[4096]);
                    w.fullPages++;
                }
                default -> fail("unexpected RAM flags 0x" + Integer.toHexString(flags));
            }
            first = false;
        }
    }

    private static String str8(DataInputStream in) throws IOException {
        byte[] b = new byte[in.readUnsignedByte()];
        in.readFully(b);
        return new String(b, StandardCharsets.UTF_8);
    }

    private static void footer(DataInputStream in, int id) throws IOException {
        assertEquals(0x7e, in.readUnsignedByte(), "QEMU_VM_SECTION_FOOTER");
        assertEquals(id, in.readInt(), "footer section id");
    }
}
