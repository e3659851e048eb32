package dev.ferry.cli;

import picocli.CommandLine.Option;

/** {@code --check}, shared by the benchmarks: a missed target exits with status 1, so scripts can rely on it. */
final class BenchCheck {

    @Option(names = "--check", description = "Exit with status 1 if a target is missed (the figures are printed "
            + "either way).")
    boolean check;

    /** @return the exit status for a run whose targets were {@code met} or not */
    int exitStatus(boolean met) {
        return check && !met ? Ferry.FAILURE : 0;
    }
}
