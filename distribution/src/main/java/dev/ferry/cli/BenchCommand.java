package dev.ferry.cli;

import picocli.CommandLine.Command;

/** {@code ferry bench}: benchmark scenarios that print their figures beside their baselines. */
@Command(name = "bench", mixinStandardHelpOptions = true,
        description = "Benchmarks, each measured side by side with its baseline in one run.",
        subcommands = {MigrationBench.class, BitmapLockBench.class, TrackersBench.class, SyncCostBench.class,
                VhostBench.class, VmstateLoadBench.class})
final class BenchCommand implements Runnable {

    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        throw new picocli.CommandLine.ParameterException(spec.commandLine(),
                "a scenario is needed: migration, bitmap-lock, trackers, sync-cost, vhost or vmstate-load");
    }
}
