package dev.ferry.migration.bootstrap;

import dev.ferry.migration.Incoming;
import dev.ferry.migration.LoopbackMigration;
import dev.ferry.migration.Migration;
import dev.ferry.migration.MigrationParameters;
import dev.ferry.migration.MigrationStats;
import dev.ferry.migration.channel.Channels;
import dev.ferry.migration.channel.Connection;
import dev.ferry.migration.channel.MigrationUri;

import java.io.IOException;
import java.util.Optional;
import java.util.function.Consumer;
import java.util.function.Supplier;

/**
 * Where a migration goes: a destination built in this process, or a URI where another process
 * listens or a file is written. Bound by {@link MigrationModule}; bind another to send elsewhere.
 */
public interface MigrationTarget {

    /**
     * Reaches the destination. Called before the guest is built, so that a wrong address fails
     * in milliseconds, not after gigabytes were preallocated.
     *
     * @throws IOException if the destination cannot be reached
     */
    Session open() throws IOException;

    /** An open destination, good for one migration. */
    interface Session extends AutoCloseable {

        /** @return where it goes, for reports */
        String description();

        /**
         * Migrates the running {@code source} there.
         *
         * @return the source's figures and, for a destination in this process, its result
         */
        LoopbackMigration.Outcome migrate(TrackedMachine source, MigrationParameters params,
                                          Consumer<MigrationStats> progress) throws IOException;

        @Override
        void close() throws IOException;
    }

    /**
     * A destination in this process over loopback TCP, built by {@code incoming}. Opening it
     * prepares the RAM of a guest of {@code ramSize} bytes there ({@link Incoming#prepareRam}),
     * faulted in while the source guest is built and warms up, as a destination started first.
     */
    static MigrationTarget inProcess(Supplier<Incoming> incoming, long ramSize) {
        return () -> {
            Incoming destination = incoming.get();
            try {
                destination.prepareRam(ramSize);
            } catch (IllegalArgumentException e) {
                destination.close();
                throw new IOException("the destination in this process cannot hold the guest: " + e.getMessage(), e);
            }
            return new Session() {
                @Override
                public String description() {
                    return "a destination in this process, over loopback TCP";
                }

                @Override
                public LoopbackMigration.Outcome migrate(TrackedMachine source, MigrationParameters params,
                                                         Consumer<MigrationStats> progress) throws IOException {
                    return LoopbackMigration.run(source, params, destination, progress);
                }

                @Override
                public void close() {
                    destination.close();
                }
            };
        };
    }

    /** A destination at {@code uri}: {@code ferry incoming} in another process, or a file. */
    static MigrationTarget at(MigrationUri uri) {
        return () -> {
            Connection connection = Channels.connect(uri);
            return new Session() {
                @Override
                public String description() {
                    return uri.toString();
                }

                @Override
                public LoopbackMigration.Outcome migrate(TrackedMachine source, MigrationParameters params,
                                                         Consumer<MigrationStats> progress) {
                    return new LoopbackMigration.Outcome(new Migration(source, connection, params).run(progress),
                            Optional.empty(), Optional.empty());
                }

                @Override
                public void close() throws IOException {
                    connection.close();
                }
            };
        };
    }
}
