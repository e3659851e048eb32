package dev.ferry.migration;

import dev.ferry.migration.bootstrap.TrackedMachine;
import dev.ferry.migration.channel.Channels;
import dev.ferry.migration.channel.Connection;
import dev.ferry.migration.channel.MigrationUri;

import java.io.IOException;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Consumer;

/**
 * A migration with both ends in this process over loopback TCP: what {@code ferry migrate}
 * runs by default and what the benchmarks measure. Real sockets, real stream, two machines.
 */
public final class LoopbackMigration {

    /**
     * How it went.
     *
     * @param stats       the source's figures
     * @param destination the destination's result, if it received the guest
     * @param destinationError why the destination failed, if it did
     */
    public record Outcome(MigrationStats stats, Optional<Incoming.Result> destination, Optional<String> destinationError) {
    }

    private LoopbackMigration() {
    }

    /**
     * Migrates {@code source} to a new machine in this process.
     *
     * @param incoming the destination side, which builds the new machine from the stream
     */
    public static Outcome run(TrackedMachine source, MigrationParameters params, Incoming incoming,
                              Consumer<MigrationStats> progress) throws IOException {
        CompletableFuture<Incoming.Result> received = new CompletableFuture<>();
        try (Channels.Listener listener = Channels.listen(MigrationUri.parse("tcp:127.0.0.1:0"))) {
            Thread.ofPlatform().name("destination").daemon().start(() -> {
                try (Connection c = listener.accept()) {
                    received.complete(incoming.receive(c));
                } catch (Throwable e) {
                    received.completeExceptionally(e);
                }
            });
            Connection connection = Channels.connect(MigrationUri.parse(listener.address()));
            MigrationStats stats = new Migration(source, connection, params).run(progress);
            try {
                // The destination answers (or fails) right after the source finishes.
                Incoming.Result r = received.get(30, TimeUnit.SECONDS);
                return new Outcome(stats, Optional.of(r), Optional.empty());
            } catch (ExecutionException e) {
                return new Outcome(stats, Optional.empty(), Optional.of(String.valueOf(e.getCause().getMessage())));
            } catch (TimeoutException e) {
                return new Outcome(stats, Optional.empty(), Optional.of("the destination did not finish"));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IOException("interrupted", e);
            }
        }
    }
}
