package dev.ferry.vmstate;

import dev.ferry.api.vmstate.VMState;
import dev.ferry.api.vmstate.VMStateDescription;
import dev.ferry.api.vmstate.VMStateField;
import dev.ferry.api.vmstate.VMStateType;

import java.io.ByteArrayOutputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * Saves device state in QEMU's vmstate wire format (vmstate_save_state) and describes it the way
 * QEMU's JSON description does (vmsd_desc_field_start/end), so that
 * {@code scripts/analyze-migration.py} decodes the section from the JSON alone.
 */
public final class VMStateSaver {

    /** QEMU_VM_SUBSECTION (migration/savevm.c). */
    public static final int SUBSECTION = 0x05;

    private VMStateSaver() {
    }

    /**
     * A saved section: its body, and its entry in the stream's JSON description.
     *
     * @param bytes the fields and subsections, as they go between the section header and footer
     * @param json  the device's entry in the description's {@code "devices"} list
     */
    public record Saved(byte[] bytes, String json) {
    }

    /**
     * Runs the pre-save hooks and saves the state.
     *
     * @param section  the section's id string (QEMU's idstr), also the JSON entry's name
     * @param instance the section's instance id
     * @throws IllegalStateException if the state does not fit its description (a value too wide,
     *                               an array longer than its count field says)
     */
    public static <T> Saved save(VMState<T> state, String section, int instance) {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        DataOutputStream out = new DataOutputStream(bytes);
        Json json = new Json().begin().str("name", section).num("instance_id", instance);
        try {
            saveStruct(state.description(), state.state(), out, json);
        } catch (IOException e) {
            throw new UncheckedIOException(e); // a byte array does not fail
        }
        json.end();
        return new Saved(bytes.toByteArray(), json.toString());
    }

    /** Writes vmsd_name, version, fields and subsections into the open JSON object. */
    private static <T> void saveStruct(VMStateDescription<T> d, T obj, DataOutputStream out, Json json)
            throws IOException {
        d.preSave(obj);
        json.str("vmsd_name", d.name()).num("version", d.version()).beginArray("fields");
        for (VMStateField<T> f : d.fields()) {
            saveField(d, f, obj, out, json);
        }
        json.endArray();
        boolean any = false;
        for (VMStateDescription.Subsection<T> s : d.subsections()) {
            if (!s.needed().test(obj)) {
                continue;
            }
            if (!any) {
                json.beginArray("subsections");
                any = true;
            }
            byte[] name = s.description().name().getBytes(StandardCharsets.UTF_8);
            out.writeByte(SUBSECTION);
            out.writeByte(name.length);
            out.write(name);
            out.writeInt(s.description().version());
            json.begin();
            saveStruct(s.description(), obj, out, json);
            json.end();
        }
        if (any) {
            json.endArray();
        }
    }

    private static <T> void saveField(VMStateDescription<T> d, VMStateField<T> f, T obj, DataOutputStream out,
                                      Json json) throws IOException {
        switch (f) {
            case VMStateField.Scalar<T> s -> {
                long v = s.get().applyAsLong(obj);
                put(d, s.name(), s.type(), v, out);
                json.begin().str("name", s.name()).str("type", s.equal() ? s.type().qemuEqualName() : s.type().qemuName())
                        .num("size", s.type().size()).end();
            }
            case VMStateField.Buffer<T> b -> {
                byte[] v = b.get().apply(obj);
                checkCount(d, b.name(), b.size(), v.length, obj);
                out.write(v);
                json.begin().str("name", b.name()).str("type", "buffer").num("size", v.length).end();
            }
            case VMStateField.Array<T> a -> {
                long[] v = a.get().apply(obj);
                checkCount(d, a.name(), a.count(), v.length, obj);
                for (long e : v) {
                    put(d, a.name(), a.type(), e, out);
                }
                if (v.length > 0) {
                    json.begin().str("name", a.name());
                    if (v.length > 1) {
                        json.num("array_len", v.length);
                    }
                    json.str("type", a.type().qemuName()).num("size", a.type().size()).end();
                }
            }
            case VMStateField.Struct<T, ?> s -> saveNested(s, obj, out, json);
            case VMStateField.StructArray<T, ?> a -> saveArray(d, a, obj, out, json);
        }
    }

    private static <T, S> void saveNested(VMStateField.Struct<T, S> s, T obj, DataOutputStream out, Json json)
            throws IOException {
        int before = out.size();
        Json inner = new Json().begin();
        saveStruct(s.description(), s.get().apply(obj), out, inner);
        inner.end();
        json.begin().str("name", s.name()).str("type", "struct");
        json.raw("\"struct\": " + inner).num("size", out.size() - before).end();
    }

    private static <T, S> void saveArray(VMStateDescription<T> d, VMStateField.StructArray<T, S> a, T obj,
                                         DataOutputStream out, Json json) throws IOException {
        List<S> elements = a.get().apply(obj);
        checkCount(d, a.name(), a.count(), elements.size(), obj);
        List<String> descs = new ArrayList<>(elements.size());
        List<Integer> sizes = new ArrayList<>(elements.size());
        for (S e : elements) {
            int before = out.size();
            Json inner = new Json().begin();
            saveStruct(a.description(), e, out, inner);
            descs.add(inner.end().toString());
            sizes.add(out.size() - before);
        }
        if (elements.isEmpty()) {
            return;
        }
        // One entry with array_len when every element reads alike (QEMU compresses arrays so);
        // elements that differ (one sent a subsection) each get an entry with its index.
        boolean alike = descs.stream().distinct().count() == 1 && sizes.stream().distinct().count() == 1;
        if (alike) {
            json.begin().str("name", a.name());
            if (elements.size() > 1) {
                json.num("array_len", elements.size());
            }
            json.str("type", "struct").raw("\"struct\": " + descs.getFirst()).num("size", sizes.getFirst()).end();
            return;
        }
        for (int i = 0; i < elements.size(); i++) {
            json.begin().str("name", a.name() + "[" + i + "]").num("index", i).str("type", "struct")
                    .raw("\"struct\": " + descs.get(i)).num("size", sizes.get(i)).end();
        }
    }

    private static void put(VMStateDescription<?> d, String field, VMStateType type, long v, DataOutputStream out)
            throws IOException {
        if (!type.fits(v)) {
            throw new IllegalStateException(d.name() + "." + field + ": value " + v + " does not fit " + type.qemuName());
        }
        switch (type.size()) {
            case 1 -> out.writeByte((int) v);
            case 2 -> out.writeShort((int) v);
            case 4 -> out.writeInt((int) v);
            default -> out.writeLong(v);
        }
    }

    private static <T> void checkCount(VMStateDescription<T> d, String field, VMStateField.Count count, int length,
                                       T obj) {
        long expected = count.isFixed() ? count.fixed() : countValue(d, count.field(), obj);
        if (length != expected || length > count.max()) {
            throw new IllegalStateException(d.name() + "." + field + " has " + length + " elements, but "
                    + (count.isFixed() ? "its description fixes " + expected
                    : "field " + count.field() + " says " + expected + " (at most " + count.max() + ")"));
        }
    }

    private static <T> long countValue(VMStateDescription<T> d, String name, T obj) {
        for (VMStateField<T> f : d.fields()) {
            if (f instanceof VMStateField.Scalar<T> s && s.name().equals(name)) {
                return s.get().applyAsLong(obj);
            }
        }
        throw new IllegalStateException(d.name() + ": no count field " + name); // the builder checked this
    }
}
