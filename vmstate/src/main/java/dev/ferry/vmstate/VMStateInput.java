package dev.ferry.vmstate;

import java.io.IOException;

/**
 * Where a device section is read from: the migration stream, positioned at the section's first
 * field. Integers are big-endian.
 */
public interface VMStateInput {

    int get8() throws IOException;

    int get16() throws IOException;

    int get32() throws IOException;

    long get64() throws IOException;

    /** Reads {@code length} bytes; the caller has bounded the length. */
    byte[] getBytes(int length) throws IOException;

    /**
     * @return the next {@code length} bytes without consuming them, or fewer if the stream ends
     *         first; {@code length} is at most 256
     */
    byte[] peek(int length) throws IOException;

    /** @return the offset of the next byte, for error messages */
    long offset();

    /** @return an input over a section body held in memory */
    static VMStateInput of(byte[] bytes) {
        return new BytesInput(bytes);
    }
}
