package dev.ferry.api.vmstate;

import java.util.Objects;

/**
 * A device's state as it migrates: the object that holds it, and the description that says
 * which of its fields move and how. A device returns one from
 * {@link dev.ferry.api.Device#vmstate()}; the engine saves it on the source and loads it on the
 * destination, into the destination device's own object.
 *
 * @param description how the state is laid out
 * @param state       the object the description's getters read and setters write, usually the device
 * @param <T>         the state's type
 */
public record VMState<T>(VMStateDescription<T> description, T state) {

    public VMState {
        Objects.requireNonNull(description, "description");
        Objects.requireNonNull(state, "state");
    }

    /** @return the binding of {@code description} to {@code state} */
    public static <T> VMState<T> of(VMStateDescription<T> description, T state) {
        return new VMState<>(description, state);
    }
}
