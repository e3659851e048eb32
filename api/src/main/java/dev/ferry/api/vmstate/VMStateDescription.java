package dev.ferry.api.vmstate;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.function.BiConsumer;
import java.util.function.Consumer;
import java.util.function.Function;
import java.util.function.ObjLongConsumer;
import java.util.function.Predicate;
import java.util.function.ToLongFunction;

/**
 * How a device's state migrates (QEMU's VMStateDescription): a name, the version the source
 * writes, the oldest version the destination still reads, the fields in wire order, optional
 * subsections, and hooks. The engine encodes it in QEMU's vmstate wire format and describes it
 * in the JSON QEMU appends to a stream, so QEMU's {@code scripts/analyze-migration.py} prints a
 * Ferry device's state.
 *
 * <pre>{@code
 * static final VMStateDescription<Queue> QUEUE = VMStateDescription.<Queue>builder("virtqueue")
 *         .uint16("last_avail_idx", q -> q.lastAvail, (q, v) -> q.lastAvail = (int) v)
 *         .build();
 * static final VMStateDescription<MyDevice> DEVICE = VMStateDescription.<MyDevice>builder("my-device")
 *         .version(2).minimumVersion(1)
 *         .uint32Equal("num_queues", d -> d.queues.size())
 *         .structArray("vqs", QUEUE, Count.from("num_queues", 1024), d -> d.queues)
 *         .uint64("features", d -> d.features, (d, v) -> d.features = v).since(2)
 *         .postLoad((d, version) -> d.remapBars())
 *         .build();
 * }</pre>
 *
 * <h2>Loading</h2>
 * The destination reads the whole section and checks it (versions, lengths, equal fields,
 * subsections, the footer) before it changes anything: a malformed section leaves the device as
 * it was. Then, for each description from the outside in, it runs pre-load, sets the fields,
 * loads the subsections the stream carries, and runs post-load.
 *
 * <h2>Subsections</h2>
 * State that only some machines have (a feature in use, a non-default value) goes in a
 * subsection, sent only when its {@code needed} predicate says so; a destination that does not
 * know a subsection the stream carries refuses the stream. A subsection's name starts with its
 * parent's name and a slash, as in QEMU.
 *
 * <h2>Hooks</h2>
 * Pre-save runs on the source before the fields are read (to gather state kept elsewhere);
 * pre-load on the destination before they are set (to set defaults for subsections that may not
 * come); post-load after (to act on the new state: map a BAR, check the rings). Post-load runs
 * inside the destination's load transaction: it may change the memory topology and read guest
 * memory, and sees the topology loaded so far. A hook reports a bad state by throwing an
 * unchecked exception whose message says what is wrong; the load then fails.
 *
 * @param <T> the type of the object holding the state
 */
public final class VMStateDescription<T> {

    /** Post-load hook. */
    @FunctionalInterface
    public interface PostLoad<T> {
        /**
         * @param state   the object just loaded
         * @param version the version of the state in the stream
         */
        void postLoad(T state, int version);
    }

    /**
     * A subsection and when it is sent.
     *
     * @param description its fields, over the same object as the parent
     * @param needed      whether the source sends it for this state
     */
    public record Subsection<T>(VMStateDescription<T> description, Predicate<T> needed) {
    }

    private final String name;
    private final int version;
    private final int minimumVersion;
    private final List<VMStateField<T>> fields;
    private final List<Subsection<T>> subsections;
    private final Consumer<T> preSave;
    private final Consumer<T> preLoad;
    private final PostLoad<T> postLoad;

    private VMStateDescription(Builder<T> b) {
        this.name = b.name;
        this.version = b.version;
        this.minimumVersion = b.minimumVersion;
        this.fields = List.copyOf(b.fields);
        this.subsections = List.copyOf(b.subsections);
        this.preSave = b.preSave;
        this.preLoad = b.preLoad;
        this.postLoad = b.postLoad;
    }

    /** @return a builder for a description named {@code name}, version 1 */
    public static <T> Builder<T> builder(String name) {
        return new Builder<>(name);
    }

    /** @return the name, e.g. {@code "vhost-net"}; subsections are {@code "parent/name"} */
    public String name() {
        return name;
    }

    /** @return the version the source writes */
    public int version() {
        return version;
    }

    /** @return the oldest version this description still loads */
    public int minimumVersion() {
        return minimumVersion;
    }

    /** @return the fields, in wire order */
    public List<VMStateField<T>> fields() {
        return fields;
    }

    /** @return the subsections, in the order the source sends them */
    public List<Subsection<T>> subsections() {
        return subsections;
    }

    /** Runs the pre-save hook. */
    public void preSave(T state) {
        preSave.accept(state);
    }

    /** Runs the pre-load hook. */
    public void preLoad(T state) {
        preLoad.accept(state);
    }

    /** Runs the post-load hook. */
    public void postLoad(T state, int streamVersion) {
        postLoad.postLoad(state, streamVersion);
    }

    @Override
    public String toString() {
        return name + " v" + version;
    }

    /**
     * Builds a description; each method adds a field after the previous ones.
     *
     * @param <T> the type of the object holding the state
     */
    public static final class Builder<T> {
        private final String name;
        private int version = 1;
        private int minimumVersion = 1;
        private final List<VMStateField<T>> fields = new ArrayList<>();
        private final Map<String, VMStateField<T>> byName = new HashMap<>();
        private final List<Subsection<T>> subsections = new ArrayList<>();
        private Consumer<T> preSave = s -> { };
        private Consumer<T> preLoad = s -> { };
        private PostLoad<T> postLoad = (s, v) -> { };

        private Builder(String name) {
            if (name == null || name.isEmpty() || name.length() > 127) {
                throw new IllegalArgumentException("a state description needs a name of 1 to 127 characters");
            }
            this.name = name;
        }

        /** Sets the version the source writes (default 1). */
        public Builder<T> version(int v) {
            this.version = v;
            return this;
        }

        /** Sets the oldest version still loaded (default 1). */
        public Builder<T> minimumVersion(int v) {
            this.minimumVersion = v;
            return this;
        }

        /** Marks the field added last as present from {@code v} on. */
        public Builder<T> since(int v) {
            if (fields.isEmpty()) {
                throw new IllegalStateException("since() follows the field it applies to");
            }
            VMStateField<T> f = fields.removeLast().since(v);
            fields.add(f);
            byName.put(f.name(), f);
            return this;
        }

        /** Adds an integer or boolean field of any type. */
        public Builder<T> scalar(String field, VMStateType type, ToLongFunction<T> get, ObjLongConsumer<T> set) {
            return add(new VMStateField.Scalar<>(field, type, get, Objects.requireNonNull(set, "set"), false, 1));
        }

        /** Adds a field that is checked on load, not set: both sides must have the same value. */
        public Builder<T> equal(String field, VMStateType type, ToLongFunction<T> get) {
            return add(new VMStateField.Scalar<>(field, type, get, null, true, 1));
        }

        public Builder<T> bool(String field, Predicate<T> get, BiConsumer<T, Boolean> set) {
            return scalar(field, VMStateType.BOOL, s -> get.test(s) ? 1 : 0, (s, v) -> set.accept(s, v != 0));
        }

        public Builder<T> uint8(String field, ToLongFunction<T> get, ObjLongConsumer<T> set) {
            return scalar(field, VMStateType.UINT8, get, set);
        }

        public Builder<T> uint16(String field, ToLongFunction<T> get, ObjLongConsumer<T> set) {
            return scalar(field, VMStateType.UINT16, get, set);
        }

        public Builder<T> uint32(String field, ToLongFunction<T> get, ObjLongConsumer<T> set) {
            return scalar(field, VMStateType.UINT32, get, set);
        }

        public Builder<T> uint64(String field, ToLongFunction<T> get, ObjLongConsumer<T> set) {
            return scalar(field, VMStateType.UINT64, get, set);
        }

        public Builder<T> int32(String field, ToLongFunction<T> get, ObjLongConsumer<T> set) {
            return scalar(field, VMStateType.INT32, get, set);
        }

        public Builder<T> int64(String field, ToLongFunction<T> get, ObjLongConsumer<T> set) {
            return scalar(field, VMStateType.INT64, get, set);
        }

        /** Adds a 32-bit field that both sides must agree on (QEMU's VMSTATE_UINT32_EQUAL). */
        public Builder<T> uint32Equal(String field, ToLongFunction<T> get) {
            return equal(field, VMStateType.UINT32, get);
        }

        /** Adds a 64-bit field that both sides must agree on (QEMU's VMSTATE_UINT64_EQUAL). */
        public Builder<T> uint64Equal(String field, ToLongFunction<T> get) {
            return equal(field, VMStateType.UINT64, get);
        }

        /** Adds a buffer of {@code size} bytes, or of the count an earlier field holds. */
        public Builder<T> buffer(String field, VMStateField.Count size, Function<T, byte[]> get,
                                 BiConsumer<T, byte[]> set) {
            return add(new VMStateField.Buffer<>(field, size, get, set, 1));
        }

        /** Adds an array of integers. */
        public Builder<T> array(String field, VMStateType type, VMStateField.Count count, Function<T, long[]> get,
                                BiConsumer<T, long[]> set) {
            return add(new VMStateField.Array<>(field, type, count, get, set, 1));
        }

        /** Adds a nested object. */
        public <S> Builder<T> struct(String field, VMStateDescription<S> description, Function<T, S> get) {
            return add(new VMStateField.Struct<>(field, description, get, 1));
        }

        /** Adds an array of nested objects. */
        public <S> Builder<T> structArray(String field, VMStateDescription<S> description, VMStateField.Count count,
                                          Function<T, List<S>> get) {
            return add(new VMStateField.StructArray<>(field, description, count, get, 1));
        }

        /** Adds a subsection, sent when {@code needed} holds for the state being saved. */
        public Builder<T> subsection(VMStateDescription<T> description, Predicate<T> needed) {
            if (!description.name().startsWith(name + "/")) {
                throw new IllegalArgumentException("subsection " + description.name() + " of " + name
                        + " must be named " + name + "/...");
            }
            for (Subsection<T> s : subsections) {
                if (s.description().name().equals(description.name())) {
                    throw new IllegalArgumentException("subsection " + description.name() + " is there already");
                }
            }
            subsections.add(new Subsection<>(description, Objects.requireNonNull(needed, "needed")));
            return this;
        }

        public Builder<T> preSave(Consumer<T> hook) {
            this.preSave = Objects.requireNonNull(hook);
            return this;
        }

        public Builder<T> preLoad(Consumer<T> hook) {
            this.preLoad = Objects.requireNonNull(hook);
            return this;
        }

        public Builder<T> postLoad(PostLoad<T> hook) {
            this.postLoad = Objects.requireNonNull(hook);
            return this;
        }

        private Builder<T> add(VMStateField<T> f) {
            Objects.requireNonNull(f.name(), "field name");
            if (f.name().isEmpty() || byName.containsKey(f.name())) {
                throw new IllegalArgumentException(name + ": field name '" + f.name() + "' is empty or taken");
            }
            VMStateField.Count count = switch (f) {
                case VMStateField.Buffer<T> b -> b.size();
                case VMStateField.Array<T> a -> a.count();
                case VMStateField.StructArray<T, ?> a -> a.count();
                default -> null;
            };
            if (count != null && !count.isFixed()) {
                if (!(byName.get(count.field()) instanceof VMStateField.Scalar<T> s) || !s.type().isCount()) {
                    throw new IllegalArgumentException(name + ": field " + f.name() + " takes its count from '"
                            + count.field() + "', which must be an earlier uint8, uint16 or uint32 field");
                }
            }
            if (f instanceof VMStateField.Array<T> a && a.type() == VMStateType.BOOL) {
                throw new IllegalArgumentException(name + ": arrays of bool are not supported; use uint8");
            }
            fields.add(f);
            byName.put(f.name(), f);
            return this;
        }

        /**
         * @throws IllegalArgumentException if the versions are inconsistent
         */
        public VMStateDescription<T> build() {
            if (minimumVersion < 0 || minimumVersion > version) {
                throw new IllegalArgumentException(name + ": minimum version " + minimumVersion
                        + " must be between 0 and the version " + version);
            }
            for (VMStateField<T> f : fields) {
                if (f.sinceVersion() > version) {
                    throw new IllegalArgumentException(name + ": field " + f.name() + " is since version "
                            + f.sinceVersion() + ", after the description's version " + version);
                }
                if (f instanceof VMStateField.Scalar<T> s && !s.equal() && s.set() == null) {
                    throw new IllegalArgumentException(name + ": field " + f.name() + " has no setter");
                }
            }
            return new VMStateDescription<>(this);
        }
    }
}
