package dev.ferry.cli;

import dev.ferry.machine.Machine;
import dev.ferry.machine.MachineConfig;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.SequentialImage;
import dev.ferry.migration.Incoming;
import dev.ferry.migration.bootstrap.Bootstrap;
import dev.ferry.migration.channel.Channels;
import dev.ferry.migration.channel.Connection;
import dev.ferry.migration.channel.MigrationUri;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.io.IOException;
import java.io.PrintWriter;
import java.util.Optional;
import java.util.concurrent.Callable;

/** {@code ferry incoming}: receive a migrated guest and run it. */
@Command(name = "incoming", mixinStandardHelpOptions = true,
        description = {"Wait for a migration (tcp:HOST:PORT, unix:PATH) or restore a saved one (file:PATH), run the "
                + "guest, and report. A rejected stream is reported with its byte offset; over a socket the "
                + "destination then waits for the next attempt."})
final class IncomingCommand implements Callable<Integer> {

    @Parameters(index = "0", paramLabel = "URI", description = "Where to receive from.")
    String uriText;

    @Option(names = "--run", paramLabel = "S", defaultValue = "2",
            description = "Seconds to run the guest after it arrives, before exiting. Default: ${DEFAULT-VALUE}.")
    double runSeconds;

    @Option(names = "--once", description = "Exit after the first attempt, even a rejected one.")
    boolean once;

    @Option(names = "--no-prealloc", negatable = false, description = "Do not fault the guest's RAM in before loading.")
    boolean noPrealloc;

    @Option(names = "--mem", paramLabel = "SIZE", converter = MachineOptions.SizeConverter.class,
            description = "The guest's RAM size, if known (as QEMU's destination is started with -m): the RAM is made "
                    + "and faulted in while this waits, so the migration does not pay for it; a source guest of "
                    + "another size is refused. Without it the RAM is made when the stream names the guest.")
    Long memory;

    @Option(names = "--vmstate-load", paramLabel = "MODE", defaultValue = "batched",
            description = "How device state is applied: batched (all devices in one memory transaction) or "
                    + "per-device (a commit per device). Default: ${DEFAULT-VALUE}.")
    String deviceLoad;

    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Override
    public Integer call() throws Exception {
        if (!(runSeconds >= 0)) {
            throw new IllegalArgumentException("--run must not be negative");
        }
        MigrationUri uri = MigrationUri.parse(uriText);
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        if (memory != null) {
            if (memory < MachineConfig.RAM_ALIGN || memory % MachineConfig.RAM_ALIGN != 0) {
                throw new IllegalArgumentException("--mem must be a positive multiple of 2M, got " + Sizes.format(memory));
            }
            MachineOptions.requireHostMemory(memory, 1, "the guest");
        }
        Channels.Listener listener;
        try {
            listener = Channels.listen(uri);
        } catch (IOException e) {
            throw new IllegalArgumentException(e.getMessage());
        }
        try (listener; Incoming incoming = Bootstrap.create(Ferry.plugins(spec)).incoming(MigrateCommand.totalMemory(),
                !noPrealloc, deviceLoad())) {
            if (memory != null) {
                incoming.prepareRam(memory);
                err.printf("ferry incoming: RAM for a guest of %s made%s%n", Sizes.format(memory),
                        noPrealloc ? "" : ", and being faulted in while this waits");
            }
            while (true) {
                if (listener.repeatable()) {
                    err.println("ferry incoming: waiting on " + listener.address());
                }
                Incoming.Result result;
                try (Connection c = listener.accept()) {
                    result = incoming.receive(c);
                } catch (IOException e) {
                    err.println("ferry incoming: rejected: " + e.getMessage());
                    if (!listener.repeatable() || once) {
                        return Ferry.FAILURE;
                    }
                    continue;
                }
                report(out, result);
                return 0;
            }
        }
    }

    private void report(PrintWriter out, Incoming.Result r) throws InterruptedException {
        try (Machine m = r.machine()) {
            out.printf("received         %s in %d ms, %d pages, RAM %s%n", Sizes.format(r.bytes()),
                    r.loadNanos() / 1_000_000, r.pages(),
                    switch (r.verification()) {
                        case BY_SOURCE -> "verified: the source confirmed the digests";
                        case BY_SAVED_DIGESTS -> "verified: it matches the source's digests saved in the stream";
                        case NONE -> "NOT verified: no return path, and the stream carries no digests";
                    });
            out.printf("device state     %s%n", r.deviceLoad().summary());
            boolean sequential = m.config().workload().pattern() == Pattern.SEQUENTIAL;
            Image before = sequential ? Image.of(m) : null;
            if (sequential) {
                out.printf("memory image     %s%n", before.problem().map(b -> "BROKEN: " + b)
                        .orElse("consistent (sequential self-check)"));
            }
            long pages0 = m.pagesWritten();
            Thread.sleep((long) (runSeconds * 1000));
            out.printf("guest            ran %.1f s here, wrote %d pages%n", runSeconds, m.pagesWritten() - pages0);
            if (sequential) {
                Image after = Image.of(m);
                boolean moved = !java.util.Arrays.equals(after.steps(), before.steps());
                out.printf("continuity       %s%n", after.problem().isPresent() ? "BROKEN: " + after.problem().get()
                        : moved || runSeconds == 0 ? "the guest's counters carried on from where they stopped" : "no progress");
            }
        }
    }

    /** A sequential guest's image, checked with its vCPUs paused: a running guest changes it under the reader. */
    private record Image(Optional<String> problem, long[] steps) {
        static Image of(Machine m) {
            m.pause();
            try {
                return new Image(SequentialImage.check(m.ram().host(), m.config().workload(), m.vcpus()),
                        SequentialImage.steps(m.ram().host(), m.config().workload(), m.vcpus()));
            } finally {
                m.resume();
            }
        }
    }

    private Incoming.DeviceLoad deviceLoad() {
        return vmstateLoad(deviceLoad);
    }

    /** @return the --vmstate-load word as a mode, or a usage error naming the option */
    static Incoming.DeviceLoad vmstateLoad(String word) {
        try {
            return Incoming.DeviceLoad.parse(word);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("--vmstate-load " + e.getMessage());
        }
    }
}
