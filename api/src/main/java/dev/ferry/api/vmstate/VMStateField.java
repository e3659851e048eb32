package dev.ferry.api.vmstate;

import java.util.List;
import java.util.Objects;
import java.util.function.BiConsumer;
import java.util.function.Function;
import java.util.function.ObjLongConsumer;
import java.util.function.ToLongFunction;

/**
 * One field of a device state description (QEMU's VMStateField). Fields are read and written in
 * the order the description lists them; a field added in a later version of the state carries
 * that version ({@link #sinceVersion()}), and is absent from streams of older versions. Build
 * them with {@link VMStateDescription.Builder}.
 *
 * @param <T> the type of the object holding the state
 */
public sealed interface VMStateField<T> {

    /** @return the field's name, unique within its description */
    String name();

    /** @return the first state version that has this field */
    int sinceVersion();

    /** @return this field as first present in {@code version} */
    VMStateField<T> since(int version);

    /**
     * How many elements an array or bytes a buffer has: a fixed number, or the value of an earlier
     * unsigned field of the same description (QEMU's VMS_VARRAY and VMS_VBUFFER), bounded so that
     * a hostile stream cannot make the loader allocate without limit.
     *
     * @param fixed the fixed count, or -1
     * @param field the name of the field holding the count, or null
     * @param max   the most elements the field may hold
     */
    record Count(int fixed, String field, int max) {

        public Count {
            if (field == null ? fixed < 0 || fixed != max : fixed != -1 || max < 0) {
                throw new IllegalArgumentException("a count is either fixed or taken from a field with a maximum");
            }
        }

        /** @return a fixed count of {@code n} */
        public static Count of(int n) {
            return new Count(n, null, n);
        }

        /** @return a count held by the earlier field {@code field}, at most {@code max} */
        public static Count from(String field, int max) {
            return new Count(-1, Objects.requireNonNull(field, "field"), max);
        }

        /** @return whether the count is fixed */
        public boolean isFixed() {
            return field == null;
        }
    }

    /**
     * An integer or boolean. An <em>equal</em> field is not loaded but checked: the destination's
     * value must be the source's (QEMU's {@code VMSTATE_UINT32_EQUAL}), for configuration that
     * both sides must share, such as a queue count.
     */
    record Scalar<T>(String name, VMStateType type, ToLongFunction<T> get, ObjLongConsumer<T> set, boolean equal,
                     int sinceVersion) implements VMStateField<T> {
        @Override
        public Scalar<T> since(int version) {
            return new Scalar<>(name, type, get, set, equal, version);
        }
    }

    /** Bytes copied as they are (QEMU's VMSTATE_BUFFER and VMSTATE_VBUFFER). */
    record Buffer<T>(String name, Count size, Function<T, byte[]> get, BiConsumer<T, byte[]> set, int sinceVersion)
            implements VMStateField<T> {
        @Override
        public Buffer<T> since(int version) {
            return new Buffer<>(name, size, get, set, version);
        }
    }

    /** An array of integers, given and taken as a {@code long[]} (QEMU's VMSTATE_*_ARRAY). */
    record Array<T>(String name, VMStateType type, Count count, Function<T, long[]> get, BiConsumer<T, long[]> set,
                    int sinceVersion) implements VMStateField<T> {
        @Override
        public Array<T> since(int version) {
            return new Array<>(name, type, count, get, set, version);
        }
    }

    /**
     * A nested object with a description of its own (QEMU's VMSTATE_STRUCT). The state loads
     * into the object {@code get} returns on the destination; the nested description's
     * version is not on the wire, as in QEMU.
     */
    record Struct<T, S>(String name, VMStateDescription<S> description, Function<T, S> get, int sinceVersion)
            implements VMStateField<T> {
        @Override
        public Struct<T, S> since(int version) {
            return new Struct<>(name, description, get, version);
        }
    }

    /**
     * An array of nested objects (QEMU's VMSTATE_STRUCT_ARRAY and VMSTATE_STRUCT_VARRAY). The
     * destination's list must already have as many elements as the stream carries: a device's
     * queues exist before their state is loaded, and a different number is a configuration
     * mismatch, not something to grow into.
     */
    record StructArray<T, S>(String name, VMStateDescription<S> description, Count count, Function<T, List<S>> get,
                             int sinceVersion) implements VMStateField<T> {
        @Override
        public StructArray<T, S> since(int version) {
            return new StructArray<>(name, description, count, get, version);
        }
    }
}
