package dev.ferry.migration.channel;

import java.io.IOException;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.WritableByteChannel;
import java.util.Optional;

/**
 * One end of a migration: the stream and, where the transport has one, the return path
 * (QEMU's rp: the destination's replies to the source). On the source, {@link #stream()} is
 * written and {@link #returnPath()} read; on the destination it is the other way round.
 */
public interface Connection extends AutoCloseable {

    /** @return a description for messages, e.g. "tcp:127.0.0.1:4444" */
    String description();

    /** @return the source's side of the stream (only on the source) */
    WritableByteChannel streamOut();

    /** @return the destination's side of the stream (only on the destination) */
    ReadableByteChannel streamIn();

    /** @return the return path's writable end on the destination, if the transport has one */
    Optional<WritableByteChannel> returnOut();

    /** @return the return path's readable end on the source, if the transport has one */
    Optional<ReadableByteChannel> returnIn();

    /** Cuts the connection now, failing reads and writes on both ends. */
    @Override
    void close() throws IOException;
}
