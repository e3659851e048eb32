package dev.ferry.vmstate;

import dev.ferry.api.vmstate.VMState;
import dev.ferry.api.vmstate.VMStateDescription;
import dev.ferry.api.vmstate.VMStateField;
import dev.ferry.api.vmstate.VMStateType;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Loads device state saved by {@link VMStateSaver} (QEMU's vmstate_load_state), in two phases.
 * {@link #read} reads the whole section and checks it: versions against the description's
 * range, every count against its bound, equal fields against this side's values, each
 * subsection known and sent once, booleans 0 or 1, and element counts against the objects that
 * will receive them. Nothing is set until then: {@link Pending#apply()} runs the hooks and sets
 * the fields. A corrupt section therefore leaves the device as it was.
 */
public final class VMStateLoader {

    private VMStateLoader() {
    }

    /** A section that was read and checked, not yet set into its object. */
    public interface Pending {
        /**
         * Runs pre-load, sets the fields, loads the subsections and runs post-load, from the
         * outside in.
         *
         * @throws VMStateException if a hook refused the state, naming the description and why
         */
        void apply() throws VMStateException;
    }

    /**
     * Reads and checks one section body.
     *
     * @param in      positioned at the first field
     * @param target  the description and the object to load into
     * @param version the version in the section header
     * @throws VMStateException if the section does not fit the description
     * @throws IOException      if the stream fails or ends
     */
    public static <T> Pending read(VMStateInput in, VMState<T> target, int version) throws IOException {
        VMStateDescription<T> d = target.description();
        checkVersion(d, version, d.name());
        Node<T> node = readStruct(in, d, target.state(), version, d.name());
        return () -> apply(node);
    }

    private static void checkVersion(VMStateDescription<?> d, int version, String path) throws VMStateException {
        if (version > d.version()) {
            throw new VMStateException(path + ": the stream has state version " + version + ", newer than this side's "
                    + d.version() + " (it loads versions " + d.minimumVersion() + " to " + d.version()
                    + "): the source runs a newer device");
        }
        if (version < d.minimumVersion()) {
            throw new VMStateException(path + ": the stream has state version " + version + ", older than the oldest "
                    + "this side loads (" + d.minimumVersion() + " to " + d.version() + ")");
        }
    }

    /** A struct as read: its field values by index (null where the version has no such field), and its subsections. */
    private record Node<T>(VMStateDescription<T> description, T object, int version, Object[] values,
                           List<Node<T>> subsections) {
    }

    private static <T> Node<T> readStruct(VMStateInput in, VMStateDescription<T> d, T obj, int version, String path)
            throws IOException {
        List<VMStateField<T>> fields = d.fields();
        Object[] values = new Object[fields.size()];
        Map<String, Long> counts = new HashMap<>();
        for (int i = 0; i < fields.size(); i++) {
            VMStateField<T> f = fields.get(i);
            if (f.sinceVersion() > version) {
                continue;
            }
            String at = path + "." + f.name();
            values[i] = switch (f) {
                case VMStateField.Scalar<T> s -> {
                    long v = get(in, s.type(), at);
                    if (s.equal()) {
                        long here = s.get().applyAsLong(obj);
                        if (v != here) {
                            throw new VMStateException(at + " is " + v + " in the stream and " + here
                                    + " here: the two sides are configured differently");
                        }
                    }
                    counts.put(s.name(), v);
                    yield v;
                }
                case VMStateField.Buffer<T> b -> in.getBytes(count(b.size(), counts, at));
                case VMStateField.Array<T> a -> {
                    long[] v = new long[count(a.count(), counts, at)];
                    for (int k = 0; k < v.length; k++) {
                        v[k] = get(in, a.type(), at);
                    }
                    yield v;
                }
                case VMStateField.Struct<T, ?> s -> readNested(in, s, obj, at);
                case VMStateField.StructArray<T, ?> a -> readArray(in, a, obj, count(a.count(), counts, at), at);
            };
        }
        return new Node<>(d, obj, version, values, readSubsections(in, d, obj, path));
    }

    private static <T, S> Node<S> readNested(VMStateInput in, VMStateField.Struct<T, S> s, T obj, String at)
            throws IOException {
        // A nested struct's version is not on the wire: it is the description's own (as QEMU).
        return readStruct(in, s.description(), s.get().apply(obj), s.description().version(), at);
    }

    private static <T, S> List<Node<S>> readArray(VMStateInput in, VMStateField.StructArray<T, S> a, T obj, int n,
                                                  String at) throws IOException {
        List<S> here = a.get().apply(obj);
        if (here.size() != n) {
            throw new VMStateException(at + " has " + n + " elements in the stream and " + here.size()
                    + " here: the two sides are configured differently");
        }
        List<Node<S>> out = new ArrayList<>(n);
        for (int k = 0; k < n; k++) {
            out.add(readStruct(in, a.description(), here.get(k), a.description().version(), at + "[" + k + "]"));
        }
        return out;
    }

    private static <T> List<Node<T>> readSubsections(VMStateInput in, VMStateDescription<T> d, T obj, String path)
            throws IOException {
        List<Node<T>> out = new ArrayList<>();
        String prefix = d.name() + "/";
        while (true) {
            byte[] head = in.peek(2);
            if (head.length < 2 || (head[0] & 0xff) != VMStateSaver.SUBSECTION) {
                return out;
            }
            int len = head[1] & 0xff;
            byte[] peeked = in.peek(2 + len);
            String name = new String(peeked, 2, Math.max(0, peeked.length - 2), StandardCharsets.UTF_8);
            if (!name.startsWith(prefix)) {
                return out; // a subsection of an enclosing description (QEMU checks the prefix too)
            }
            in.get8();
            in.get8();
            in.getBytes(len);
            int version = in.get32();
            VMStateDescription.Subsection<T> sub = null;
            for (VMStateDescription.Subsection<T> s : d.subsections()) {
                if (s.description().name().equals(name)) {
                    sub = s;
                }
            }
            String at = path + "/" + name.substring(prefix.length());
            if (sub == null) {
                throw new VMStateException(path + ": unknown subsection '" + name + "': the source sent state this "
                        + "side does not know");
            }
            for (Node<T> n : out) {
                if (n.description() == sub.description()) {
                    throw new VMStateException(at + ": subsection sent twice");
                }
            }
            checkVersion(sub.description(), version, at);
            out.add(readStruct(in, sub.description(), obj, version, at));
        }
    }

    private static int count(VMStateField.Count c, Map<String, Long> counts, String at) throws VMStateException {
        if (c.isFixed()) {
            return c.fixed();
        }
        Long n = counts.get(c.field());
        if (n == null) {
            throw new VMStateException(at + ": its count field " + c.field() + " is not in this version of the state");
        }
        if (n < 0 || n > c.max()) {
            throw new VMStateException(at + ": " + c.field() + " says " + n + " elements, more than the " + c.max()
                    + " allowed");
        }
        return n.intValue();
    }

    private static long get(VMStateInput in, VMStateType type, String at) throws IOException {
        return switch (type) {
            case BOOL -> {
                int b = in.get8();
                if (b > 1) {
                    throw new VMStateException(at + ": boolean byte is " + b + ", not 0 or 1");
                }
                yield b;
            }
            case INT8 -> (byte) in.get8();
            case UINT8 -> in.get8();
            case INT16 -> (short) in.get16();
            case UINT16 -> in.get16();
            case INT32 -> in.get32();
            case UINT32 -> in.get32() & 0xffff_ffffL;
            case INT64, UINT64 -> in.get64();
        };
    }

    private static <T> void apply(Node<T> node) throws VMStateException {
        VMStateDescription<T> d = node.description();
        T obj = node.object();
        hook(d, "pre-load", () -> d.preLoad(obj));
        List<VMStateField<T>> fields = d.fields();
        for (int i = 0; i < fields.size(); i++) {
            Object v = node.values()[i];
            if (v == null) {
                continue;
            }
            VMStateField<T> f = fields.get(i);
            switch (f) {
                case VMStateField.Scalar<T> s -> {
                    if (!s.equal()) {
                        s.set().accept(obj, (Long) v);
                    }
                }
                case VMStateField.Buffer<T> b -> b.set().accept(obj, (byte[]) v);
                case VMStateField.Array<T> a -> a.set().accept(obj, (long[]) v);
                case VMStateField.Struct<T, ?> s -> apply((Node<?>) v);
                case VMStateField.StructArray<T, ?> a -> {
                    for (Object e : (List<?>) v) {
                        apply((Node<?>) e);
                    }
                }
            }
        }
        for (Node<T> sub : node.subsections()) {
            apply(sub);
        }
        hook(d, "post-load", () -> d.postLoad(obj, node.version()));
    }

    private static void hook(VMStateDescription<?> d, String which, Runnable r) throws VMStateException {
        try {
            r.run();
        } catch (RuntimeException e) {
            String m = e.getMessage();
            VMStateException x = new VMStateException(d.name() + ": " + which + " refused the state: "
                    + (m == null || m.isBlank() ? e.toString() : m));
            x.initCause(e);
            throw x;
        }
    }
}
