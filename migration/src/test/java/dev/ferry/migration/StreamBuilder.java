package dev.ferry.migration;

import dev.ferry.machine.MachineConfig;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import dev.ferry.migration.stream.QemuFormat;

import java.io.ByteArrayOutputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;

/** Writes migration streams by hand, good or bad, for the destination to judge. */
final class StreamBuilder {

    /** The machine of the hand-made streams: 2 MiB, one idle soft vCPU. */
    static final long RAM = 2L << 20;
    static final String CONFIG = new MachineDescription("soft",
            MachineConfig.of(RAM, 1, Workload.of(Pattern.IDLE, 0))).encode();
    /** A soft vCPU's state: cursor at page 0, random state 1, no writes. */
    static final byte[] CPU_STATE = ByteBuffer.allocate(24).putLong(0).putLong(1).putLong(0).array();
    static final String DESCRIPTION = "{\"page_size\": 4096, \"devices\": []}";

    private final ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    private final DataOutputStream out = new DataOutputStream(bytes);

    /** @return bytes written so far: the offset of what comes next */
    long size() {
        return bytes.size();
    }

    byte[] bytes() {
        return bytes.toByteArray();
    }

    StreamBuilder u8(int v) {
        return io(() -> out.writeByte(v));
    }

    StreamBuilder u16(int v) {
        return io(() -> out.writeShort(v));
    }

    StreamBuilder u32(int v) {
        return io(() -> out.writeInt(v));
    }

    StreamBuilder u64(long v) {
        return io(() -> out.writeLong(v));
    }

    StreamBuilder raw(byte[] b) {
        return io(() -> out.write(b));
    }

    StreamBuilder str8(String s) {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        return u8(b.length).raw(b);
    }

    StreamBuilder header() {
        return u32(QemuFormat.FILE_MAGIC).u32(QemuFormat.FILE_VERSION);
    }

    StreamBuilder config(String name) {
        byte[] b = name.getBytes(StandardCharsets.US_ASCII);
        return u8(QemuFormat.CONFIGURATION).u32(b.length).raw(b);
    }

    StreamBuilder section(int type, int id, String idstr, int instance, int version) {
        return u8(type).u32(id).str8(idstr).u32(instance).u32(version);
    }

    StreamBuilder footer(int id) {
        return u8(QemuFormat.SECTION_FOOTER).u32(id);
    }

    /** The RAM section's START: block list of pc.ram, EOS, footer. */
    StreamBuilder ramStart() {
        return section(QemuFormat.SECTION_START, 0, "ram", 0, QemuFormat.RAM_VERSION)
                .u64(RAM | QemuFormat.RAM_FLAG_MEM_SIZE).str8("pc.ram").u64(RAM).eos().footer(0);
    }

    StreamBuilder eos() {
        return u64(QemuFormat.RAM_FLAG_EOS);
    }

    /** A full page of {@code fill} at {@code offset} of pc.ram, naming the block. */
    StreamBuilder page(long offset, byte fill) {
        byte[] data = new byte[4096];
        java.util.Arrays.fill(data, fill);
        return u64(offset | QemuFormat.RAM_FLAG_PAGE).str8("pc.ram").raw(data);
    }

    /** A zero page at {@code offset}, continuing the block. */
    StreamBuilder zeroPageContinue(long offset) {
        return u64(offset | QemuFormat.RAM_FLAG_ZERO | QemuFormat.RAM_FLAG_CONTINUE).u8(0);
    }

    StreamBuilder cpu(int id, int instance) {
        return section(QemuFormat.SECTION_FULL, id, "cpu", instance, 1).raw(CPU_STATE).footer(id);
    }

    StreamBuilder eof() {
        return u8(QemuFormat.EOF);
    }

    StreamBuilder description(String json) {
        byte[] b = json.getBytes(StandardCharsets.UTF_8);
        return u8(QemuFormat.VMDESCRIPTION).u32(b.length).raw(b);
    }

    /** Header, configuration and RAM setup: what every hand-made stream starts with. */
    static StreamBuilder prologue() {
        return new StreamBuilder().header().config(CONFIG).ramStart();
    }

    /** The RAM parts of a good stream: page 0 full of 0x5a, page 1 zero, then END. */
    StreamBuilder ramBody() {
        return u8(QemuFormat.SECTION_PART).u32(0).page(0, (byte) 0x5a).zeroPageContinue(4096).eos().footer(0)
                .u8(QemuFormat.SECTION_END).u32(0).eos().footer(0);
    }

    /** @return a complete, valid stream */
    static byte[] valid() {
        return prologue().ramBody().cpu(1, 0).eof().description(DESCRIPTION).bytes();
    }

    private interface IoAction {
        void run() throws IOException;
    }

    private StreamBuilder io(IoAction a) {
        try {
            a.run();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return this;
    }
}
