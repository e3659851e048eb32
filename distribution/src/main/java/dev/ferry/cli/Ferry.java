package dev.ferry.cli;

import dev.ferry.migration.bootstrap.Plugins;
import dev.ferry.migration.bootstrap.UsageException;
import picocli.CommandLine;
import picocli.CommandLine.Command;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The {@code ferry} command. Usage errors print one line and exit with status 2; failures
 * print one line and exit with status 1. Set {@code FERRY_DEBUG=1} to see stack traces.
 */
@Command(name = "ferry", mixinStandardHelpOptions = true, versionProvider = Ferry.Version.class,
        description = "Dirty-page tracking and live migration of virtual machines.",
        subcommands = {TrackersCommand.class, DevicesCommand.class, DirtyRateCommand.class, AuditCommand.class,
                MigrateCommand.class, IncomingCommand.class, SoakCommand.class, BenchCommand.class,
                CommandLine.HelpCommand.class})
public final class Ferry implements Runnable {

    /** Exit status for a bad command line or an impossible request. */
    static final int USAGE = 2;
    /** Exit status for a failure while running. */
    static final int FAILURE = 1;
    /** The system property the launcher sets to the package's directory (its plugins folder is searched). */
    static final String HOME_PROPERTY = "ferry.home";

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @CommandLine.Option(names = "--plugin-path", paramLabel = "DIR", split = ":",
            description = "Directories of plugins (a jar each, or a directory of jars each), searched besides "
                    + "the package's plugins folder; give it before the command.")
    List<Path> pluginPath = new ArrayList<>();

    private Plugins plugins;

    /** The providers on Ferry's class path, in the package's plugins folder and on --plugin-path; found once. */
    synchronized Plugins plugins() {
        if (plugins == null) {
            List<Path> dirs = new ArrayList<>();
            String home = System.getProperty(HOME_PROPERTY);
            if (home != null && Files.isDirectory(Path.of(home, "plugins"))) {
                dirs.add(Path.of(home, "plugins"));
            }
            dirs.addAll(pluginPath);
            plugins = Plugins.discover(dirs);
        }
        return plugins;
    }

    /** @return the plugins of the {@code ferry} command that {@code spec} belongs to */
    static Plugins plugins(CommandLine.Model.CommandSpec spec) {
        return ((Ferry) spec.root().userObject()).plugins();
    }

    @Override
    public void run() {
        throw new CommandLine.ParameterException(spec.commandLine(), "a command is needed: trackers, devices, dirtyrate, audit, migrate, incoming, soak or bench");
    }

    public static void main(String[] args) {
        System.exit(execute(args, new PrintWriter(System.out, true), new PrintWriter(System.err, true)));
    }

    /** Runs the command line; returns the exit status. */
    static int execute(String[] args, PrintWriter out, PrintWriter err) {
        CommandLine cl = new CommandLine(new Ferry());
        cl.setOut(out);
        cl.setErr(err);
        cl.setParameterExceptionHandler((e, a) -> {
            String where = e.getCommandLine().getCommandSpec().qualifiedName();
            err.println(where + ": " + oneLine(e.getMessage()) + " (see " + where + " --help)");
            return USAGE;
        });
        cl.setExecutionExceptionHandler((e, commandLine, parseResult) -> {
            String where = commandLine.getCommandSpec().qualifiedName();
            if (System.getenv("FERRY_DEBUG") != null) {
                e.printStackTrace(err);
            }
            if (e instanceof UsageException || e instanceof IllegalArgumentException) {
                err.println(where + ": " + oneLine(e.getMessage()));
                return USAGE;
            }
            err.println(where + ": error: " + oneLine(messageOf(e)));
            return FAILURE;
        });
        return cl.execute(args);
    }

    private static String messageOf(Throwable e) {
        String m = e.getMessage();
        return m == null || m.isBlank() ? e.getClass().getSimpleName() : m;
    }

    private static String oneLine(String s) {
        if (s == null) {
            return "";
        }
        int nl = s.indexOf('\n');
        return (nl < 0 ? s : s.substring(0, nl)).trim();
    }

    /** Reads the version from the jar manifest. */
    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            String v = Ferry.class.getPackage().getImplementationVersion();
            return new String[]{"ferry " + (v == null ? "(development build)" : v)};
        }
    }
}
