package dev.ferry.migration.stream;

import java.io.IOException;

/**
 * A migration stream is malformed, truncated or hostile. The message names the byte offset
 * where reading stopped and what was wrong there.
 */
public final class StreamException extends IOException {

    private static final long serialVersionUID = 1L;

    private final long offset;

    public StreamException(long offset, String reason) {
        super("bad migration stream at byte " + offset + ": " + reason);
        this.offset = offset;
    }

    /** @return the offset in the stream where the problem was found */
    public long offset() {
        return offset;
    }
}
