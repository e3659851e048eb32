package dev.ferry.cli;

import dev.ferry.migration.bootstrap.Bootstrap;
import dev.ferry.migration.bootstrap.Plugins;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.util.concurrent.Callable;

/** {@code ferry devices}: every discovered device type and whether it works here. */
@Command(name = "devices", mixinStandardHelpOptions = true,
        description = "List the device types Ferry found (plug them with --vhost or --device), whether each is "
                + "available on this host, and why not.")
final class DevicesCommand implements Callable<Integer> {

    @Option(names = "--json", description = "Print a JSON array of {name, available, reason, description}.")
    boolean json;

    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Override
    public Integer call() throws Exception {
        Plugins plugins = Ferry.plugins(spec);
        PluginListing.print(spec.commandLine().getOut(), Bootstrap.create(plugins).devices(), plugins.problems(), json);
        return 0;
    }
}
