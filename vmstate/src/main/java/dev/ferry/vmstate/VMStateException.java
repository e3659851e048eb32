package dev.ferry.vmstate;

import java.io.IOException;

/** A device section cannot be loaded: its message names the description, the field and what is wrong. */
public final class VMStateException extends IOException {

    private static final long serialVersionUID = 1L;

    public VMStateException(String message) {
        super(message);
    }
}
