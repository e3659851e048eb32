package dev.ferry.cli;

import dev.ferry.migration.bootstrap.Bootstrap;
import dev.ferry.migration.bootstrap.Plugins;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.util.concurrent.Callable;

/** {@code ferry trackers}: every discovered tracker and whether it works here. */
@Command(name = "trackers", mixinStandardHelpOptions = true,
        description = "List the dirty trackers Ferry found, whether each is available on this host, and why not.")
final class TrackersCommand implements Callable<Integer> {

    @Option(names = "--json", description = "Print a JSON array of {name, available, reason, description}.")
    boolean json;

    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Override
    public Integer call() throws Exception {
        Plugins plugins = Ferry.plugins(spec);
        PluginListing.print(spec.commandLine().getOut(), Bootstrap.create(plugins).trackers(), plugins.problems(), json);
        return 0;
    }
}
