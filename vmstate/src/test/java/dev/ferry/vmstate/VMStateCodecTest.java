package dev.ferry.vmstate;

import com.fasterxml.jackson.databind.JsonNode;
import dev.ferry.api.vmstate.VMState;
import dev.ferry.api.vmstate.VMStateDescription;
import dev.ferry.api.vmstate.VMStateField.Count;
import dev.ferry.api.vmstate.VMStateType;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayInputStream;
import java.io.DataInputStream;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Objects;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class VMStateCodecTest {

    /** A virtqueue's state. */
    static final class Queue {
        int lastAvail;
        int used;
        long descAddr;
        boolean enabled;

        String dump() {
            return lastAvail + "/" + used + "/" + descAddr + "/" + enabled;
        }
    }

    /** A timer, a nested struct. */
    static final class Timer {
        long expires = -1;
    }

    /** A device with one of every kind of field. */
    static final class Dev {
        final List<Queue> queues = new ArrayList<>();
        final Timer timer = new Timer();
        long i8;
        long i16;
        long u8;
        long i32;
        long u64;
        byte[] config = new byte[8];
        long[] regs = new long[4];
        byte[] blob = new byte[0];
        long since3;
        boolean extra;
        long extraValue;
        final List<String> log = new ArrayList<>();

        Dev(int queues) {
            for (int i = 0; i < queues; i++) {
                queues().add(new Queue());
            }
        }

        List<Queue> queues() {
            return queues;
        }

        String dump() {
            StringBuilder sb = new StringBuilder();
            queues.forEach(q -> sb.append(q.dump()).append(';'));
            return sb + " " + timer.expires + " " + i8 + " " + i16 + " " + u8 + " " + i32 + " " + u64 + " "
                    + Arrays.toString(config) + Arrays.toString(regs) + Arrays.toString(blob) + " " + since3 + " " + extraValue;
        }
    }

    static final VMStateDescription<Queue> QUEUE = VMStateDescription.<Queue>builder("virtqueue")
            .uint16("last_avail_idx", q -> q.lastAvail, (q, v) -> q.lastAvail = (int) v)
            .uint16("used_idx", q -> q.used, (q, v) -> q.used = (int) v)
            .uint64("desc", q -> q.descAddr, (q, v) -> q.descAddr = v)
            .bool("enabled", q -> q.enabled, (q, v) -> q.enabled = v)
            .build();

    static final VMStateDescription<Timer> TIMER = VMStateDescription.<Timer>builder("timer")
            .int64("expires", t -> t.expires, (t, v) -> t.expires = v)
            .build();

    static VMStateDescription.Builder<Dev> device(int version) {
        return VMStateDescription.<Dev>builder("test-dev").version(version).minimumVersion(2)
                .uint32Equal("num_queues", d -> d.queues.size())
                .scalar("i8", VMStateType.INT8, d -> d.i8, (d, v) -> d.i8 = v)
                .scalar("i16", VMStateType.INT16, d -> d.i16, (d, v) -> d.i16 = v)
                .uint8("u8", d -> d.u8, (d, v) -> d.u8 = v)
                .int32("i32", d -> d.i32, (d, v) -> d.i32 = v)
                .uint64("u64", d -> d.u64, (d, v) -> d.u64 = v)
                .structArray("vqs", QUEUE, Count.from("num_queues", 64), Dev::queues)
                .struct("timer", TIMER, d -> d.timer)
                .buffer("config", Count.of(8), d -> d.config, (d, v) -> d.config = v)
                .array("regs", VMStateType.UINT32, Count.of(4), d -> d.regs, (d, v) -> d.regs = v)
                .uint16("blob_len", d -> d.blob.length, (d, v) -> { })
                .buffer("blob", Count.from("blob_len", 1024), d -> d.blob, (d, v) -> d.blob = v);
    }

    static final VMStateDescription<Dev> EXTRA = VMStateDescription.<Dev>builder("test-dev/extra")
            .uint32("extra_value", d -> d.extraValue, (d, v) -> d.extraValue = v)
            .build();

    static VMStateDescription<Dev> v3() {
        return device(3)
                .int64("since3", d -> d.since3, (d, v) -> d.since3 = v).since(3)
                .subsection(EXTRA, d -> d.extra)
                .preSave(d -> d.log.add("pre-save"))
                .preLoad(d -> {
                    d.log.add("pre-load");
                    d.extraValue = 42; // the default when the subsection does not come
                })
                .postLoad((d, v) -> d.log.add("post-load v" + v + " extra=" + d.extraValue))
                .build();
    }

    static Dev sample() {
        Dev d = new Dev(3);
        for (int i = 0; i < 3; i++) {
            Queue q = d.queues.get(i);
            q.lastAvail = 100 + i;
            q.used = 65535 - i;
            q.descAddr = 0xfeed_0000_0000L + i;
            q.enabled = i != 1;
        }
        d.timer.expires = 123_456_789_012L;
        d.i8 = -5;
        d.i16 = -30000;
        d.u8 = 250;
        d.i32 = Integer.MIN_VALUE;
        d.u64 = -1; // 2^64 - 1
        d.config = new byte[]{1, 2, 3, 4, 5, 6, 7, 8};
        d.regs = new long[]{0, 1, 0xffff_ffffL, 0x8000_0000L};
        d.blob = "hello vmstate".getBytes();
        d.since3 = 77;
        d.extra = true;
        d.extraValue = 9;
        return d;
    }

    private static VMStateLoader.Pending read(byte[] bytes, VMStateDescription<Dev> desc, Dev into, int version)
            throws IOException {
        BytesInput in = new BytesInput(bytes);
        VMStateLoader.Pending p = VMStateLoader.read(in, VMState.of(desc, into), version);
        assertEquals(0, in.remaining(), "the loader reads the whole section");
        return p;
    }

    @Test
    void roundTripCarriesEveryFieldAndRunsTheHooksInOrder() throws IOException {
        Dev src = sample();
        VMStateSaver.Saved s = VMStateSaver.save(VMState.of(v3(), src), "test-dev", 0);
        assertEquals(List.of("pre-save"), src.log);
        Dev dst = new Dev(3);
        read(s.bytes(), v3(), dst, 3).apply();
        assertEquals(src.dump(), dst.dump());
        assertEquals(List.of("pre-load", "post-load v3 extra=9"), dst.log,
                "pre-load before the fields, post-load after the subsection");
    }

    @Test
    void aSubsectionIsSentOnlyWhenNeeded() throws IOException {
        Dev src = sample();
        src.extra = false;
        VMStateSaver.Saved s = VMStateSaver.save(VMState.of(v3(), src), "test-dev", 0);
        assertFalse(s.json().contains("subsections"));
        Dev dst = new Dev(3);
        read(s.bytes(), v3(), dst, 3).apply();
        assertEquals(42, dst.extraValue, "pre-load's default stays when the subsection does not come");
        src.extra = true;
        assertEquals(s.bytes().length + 1 + 1 + "test-dev/extra".length() + 4 + 4,
                VMStateSaver.save(VMState.of(v3(), src), "test-dev", 0).bytes().length);
    }

    @Test
    void theJsonAloneDecodesTheSectionAsQemusAnalyzerWould() throws IOException {
        Dev src = sample();
        src.queues.get(2).enabled = true;
        VMStateSaver.Saved s = VMStateSaver.save(VMState.of(v3(), src), "test-dev", 7);
        JsonNode json = AnalyzerWalk.parse(s.json());
        assertEquals("test-dev", json.get("name").asText());
        assertEquals(7, json.get("instance_id").asInt());
        assertEquals("test-dev", json.get("vmsd_name").asText());
        assertEquals(3, json.get("version").asInt());
        DataInputStream in = new DataInputStream(new ByteArrayInputStream(s.bytes()));
        Map<String, Object> got = AnalyzerWalk.read(json, in);
        assertEquals(0, in.available());
        assertEquals(3L, got.get("num_queues"));
        assertEquals(-5L, got.get("i8"));
        assertEquals(-30000L, got.get("i16"));
        assertEquals(250L, got.get("u8"));
        assertEquals((long) Integer.MIN_VALUE, got.get("i32"));
        assertEquals(-1L, got.get("u64"));
        List<?> vqs = assertInstanceOf(List.class, got.get("vqs"));
        assertEquals(3, vqs.size());
        assertEquals(65534L, ((Map<?, ?>) vqs.get(1)).get("used_idx"));
        assertEquals(false, ((Map<?, ?>) vqs.get(1)).get("enabled"));
        assertEquals(123_456_789_012L, ((Map<?, ?>) got.get("timer")).get("expires"));
        assertArrayEquals(src.config, (byte[]) got.get("config"));
        assertEquals(List.of(0L, 1L, 0xffff_ffffL, 0x8000_0000L), got.get("regs"));
        assertArrayEquals(src.blob, (byte[]) got.get("blob"));
        assertEquals(77L, got.get("since3"));
        assertEquals(9L, ((Map<?, ?>) got.get("test-dev/extra")).get("extra_value"));
    }

    @Test
    void structArrayElementsThatDifferAreListedOneByOne() throws IOException {
        VMStateDescription<Queue> q = VMStateDescription.<Queue>builder("q")
                .uint16("idx", x -> x.used, (x, v) -> x.used = (int) v)
                .subsection(VMStateDescription.<Queue>builder("q/on").bool("enabled", x -> x.enabled,
                        (x, v) -> x.enabled = v).build(), x -> x.enabled)
                .build();
        VMStateDescription<Dev> d = VMStateDescription.<Dev>builder("d")
                .structArray("vqs", q, Count.of(3), Dev::queues).build();
        Dev src = new Dev(3);
        src.queues.get(1).enabled = true;
        src.queues.get(1).used = 5;
        VMStateSaver.Saved s = VMStateSaver.save(VMState.of(d, src), "d", 0);
        Map<String, Object> got = AnalyzerWalk.read(AnalyzerWalk.parse(s.json()),
                new DataInputStream(new ByteArrayInputStream(s.bytes())));
        assertEquals(5L, ((Map<?, ?>) got.get("vqs[1]")).get("idx"));
        assertEquals(true, ((Map<?, ?>) ((Map<?, ?>) got.get("vqs[1]")).get("q/on")).get("enabled"));
        Dev dst = new Dev(3);
        VMStateLoader.read(new BytesInput(s.bytes()), VMState.of(d, dst), 1).apply();
        assertTrue(dst.queues.get(1).enabled);
        assertEquals(5, dst.queues.get(1).used);
    }

    @Test
    void anOlderSourceWithoutALaterFieldLoads() throws IOException {
        VMStateDescription<Dev> v2 = device(2).build();
        Dev src = sample();
        byte[] bytes = VMStateSaver.save(VMState.of(v2, src), "test-dev", 0).bytes();
        Dev dst = new Dev(3);
        dst.since3 = 5;
        read(bytes, v3(), dst, 2).apply();
        assertEquals(5, dst.since3, "a field since version 3 is not in a version-2 stream");
        assertEquals(src.queues.get(2).dump(), dst.queues.get(2).dump());
        assertTrue(dst.log.contains("post-load v2 extra=42"));
    }

    @Test
    void versionsOutsideTheRangeAreRefusedNamingBoth() throws IOException {
        byte[] bytes = VMStateSaver.save(VMState.of(v3(), sample()), "test-dev", 0).bytes();
        Dev dst = new Dev(3);
        VMStateException newer = assertThrows(VMStateException.class,
                () -> VMStateLoader.read(new BytesInput(bytes), VMState.of(v3(), dst), 4));
        assertTrue(newer.getMessage().contains("test-dev") && newer.getMessage().contains("version 4")
                && newer.getMessage().contains("2 to 3"), newer.getMessage());
        VMStateException older = assertThrows(VMStateException.class,
                () -> VMStateLoader.read(new BytesInput(bytes), VMState.of(v3(), dst), 1));
        assertTrue(older.getMessage().contains("older") && older.getMessage().contains("version 1"), older.getMessage());
    }

    @Test
    void anUnknownSubsectionIsRefused() throws IOException {
        VMStateDescription<Dev> newer = device(3)
                .int64("since3", d -> d.since3, (d, v) -> d.since3 = v).since(3)
                .subsection(VMStateDescription.<Dev>builder("test-dev/new-feature")
                        .uint8("x", d -> 1, (d, v) -> { }).build(), d -> true)
                .build();
        byte[] bytes = VMStateSaver.save(VMState.of(newer, sample()), "test-dev", 0).bytes();
        Dev dst = new Dev(3);
        String before = dst.dump();
        VMStateException e = assertThrows(VMStateException.class,
                () -> VMStateLoader.read(new BytesInput(bytes), VMState.of(v3(), dst), 3));
        assertTrue(e.getMessage().contains("unknown subsection 'test-dev/new-feature'"), e.getMessage());
        assertEquals(before, dst.dump());
    }

    @Test
    void aDifferentQueueCountIsAConfigurationMismatch() throws IOException {
        byte[] bytes = VMStateSaver.save(VMState.of(v3(), sample()), "test-dev", 0).bytes();
        VMStateException e = assertThrows(VMStateException.class,
                () -> VMStateLoader.read(new BytesInput(bytes), VMState.of(v3(), new Dev(2)), 3));
        assertTrue(e.getMessage().contains("test-dev.num_queues is 3 in the stream and 2 here"), e.getMessage());
    }

    @Test
    void aCountAboveItsBoundIsRefusedBeforeAllocating() throws IOException {
        Dev src = sample();
        byte[] bytes = VMStateSaver.save(VMState.of(v3(), src), "test-dev", 0).bytes();
        // blob_len sits right before the blob; make it claim 60000 bytes.
        int at = bytes.length - 8 - 1 - 1 - "test-dev/extra".length() - 4 - 4 - src.blob.length - 2;
        assertEquals(src.blob.length, ((bytes[at] & 0xff) << 8) | (bytes[at + 1] & 0xff));
        bytes[at] = (byte) 0xea;
        bytes[at + 1] = 0x60;
        VMStateException e = assertThrows(VMStateException.class,
                () -> VMStateLoader.read(new BytesInput(bytes), VMState.of(v3(), new Dev(3)), 3));
        assertTrue(e.getMessage().contains("test-dev.blob") && e.getMessage().contains("1024"), e.getMessage());
    }

    @Test
    void everyTruncationOrBadBooleanLeavesTheDeviceAsItWas() throws IOException {
        byte[] bytes = VMStateSaver.save(VMState.of(v3(), sample()), "test-dev", 0).bytes();
        int withoutSubsection = bytes.length - (1 + 1 + "test-dev/extra".length() + 4 + 4);
        for (int len = 0; len < bytes.length; len++) {
            Dev dst = new Dev(3);
            String before = dst.dump();
            byte[] cut = Arrays.copyOf(bytes, len);
            try {
                BytesInput in = new BytesInput(cut);
                VMStateLoader.read(in, VMState.of(v3(), dst), 3);
                // Only a cut right before the subsection reads as a whole section (one without
                // it), or a cut inside the subsection's header, which is left unread for the
                // caller's footer check to refuse.
                assertTrue(len == withoutSubsection || in.remaining() > 0, "prefix of " + len + " bytes accepted");
            } catch (IOException expected) {
                // refused
            }
            assertEquals(before, dst.dump(), "prefix of " + len + " bytes changed the device");
            assertTrue(dst.log.isEmpty(), "no hook ran for a section that was not applied");
        }
        // The first queue's "enabled" byte: num_queues, i8, i16, u8, i32, u64, then 2+2+8.
        int enabled = 4 + 1 + 2 + 1 + 4 + 8 + 12;
        assertEquals(1, bytes[enabled]);
        bytes[enabled] = 7;
        Dev dst = new Dev(3);
        VMStateException e = assertThrows(VMStateException.class,
                () -> VMStateLoader.read(new BytesInput(bytes), VMState.of(v3(), dst), 3));
        assertTrue(e.getMessage().contains("test-dev.vqs[0].enabled"), e.getMessage());
    }

    @Test
    void aPostLoadThatRefusesNamesTheDescription() throws IOException {
        VMStateDescription<Dev> strict = device(3).postLoad((d, v) -> {
            throw new IllegalStateException("BAR 2 at 0x1000 overlaps RAM");
        }).build();
        byte[] bytes = VMStateSaver.save(VMState.of(strict, sample()), "test-dev", 0).bytes();
        VMStateLoader.Pending p = VMStateLoader.read(new BytesInput(bytes), VMState.of(strict, new Dev(3)), 3);
        VMStateException e = assertThrows(VMStateException.class, p::apply);
        assertEquals("test-dev: post-load refused the state: BAR 2 at 0x1000 overlaps RAM", e.getMessage());
    }

    @Test
    void theSaverRefusesAStateThatDoesNotFitItsDescription() {
        Dev d = sample();
        d.u8 = 256;
        IllegalStateException wide = assertThrows(IllegalStateException.class,
                () -> VMStateSaver.save(VMState.of(v3(), d), "test-dev", 0));
        assertTrue(wide.getMessage().contains("test-dev.u8"), wide.getMessage());
        Dev e = sample();
        e.regs = new long[3];
        IllegalStateException shortArray = assertThrows(IllegalStateException.class,
                () -> VMStateSaver.save(VMState.of(v3(), e), "test-dev", 0));
        assertTrue(shortArray.getMessage().contains("regs has 3 elements"), shortArray.getMessage());
    }

    @Test
    void theBuilderRefusesInconsistentDescriptions() {
        assertThrows(IllegalArgumentException.class, () -> VMStateDescription.<Dev>builder("d")
                .buffer("b", Count.from("len", 10), x -> x.blob, (x, v) -> { }).build());
        assertThrows(IllegalArgumentException.class, () -> VMStateDescription.<Dev>builder("d")
                .int32("len", x -> 0, (x, v) -> { })
                .buffer("b", Count.from("len", 10), x -> x.blob, (x, v) -> { }).build());
        assertThrows(IllegalArgumentException.class, () -> VMStateDescription.<Dev>builder("d")
                .subsection(EXTRA, x -> true));
        assertThrows(IllegalArgumentException.class, () -> VMStateDescription.<Dev>builder("d")
                .uint8("a", x -> 0, (x, v) -> { }).since(2).build());
        assertThrows(IllegalArgumentException.class, () -> VMStateDescription.<Dev>builder("d")
                .uint8("a", x -> 0, (x, v) -> { }).uint8("a", x -> 0, (x, v) -> { }));
        assertThrows(IllegalArgumentException.class, () -> VMStateDescription.<Dev>builder("d").version(1)
                .minimumVersion(2).build());
        assertTrue(Objects.nonNull(v3()));
    }
}
