package dev.ferry.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.ferry.migration.bootstrap.Bootstrap;
import dev.ferry.migration.bootstrap.TrackerInfo;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
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
        Bootstrap bootstrap = Bootstrap.create();
        List<TrackerInfo> trackers = bootstrap.trackers();
        PrintWriter out = spec.commandLine().getOut();
        if (json) {
            List<Map<String, Object>> rows = new ArrayList<>();
            for (TrackerInfo t : trackers) {
                Map<String, Object> row = new LinkedHashMap<>();
                row.put("name", t.name());
                row.put("available", t.available());
                row.put("reason", t.reason());
                row.put("description", t.description());
                rows.add(row);
            }
            out.println(new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(rows));
            return 0;
        }
        int width = Math.max(4, trackers.stream().mapToInt(t -> t.name().length()).max().orElse(4));
        out.printf("%-" + width + "s  %-9s  %s%n", "NAME", "AVAILABLE", "DESCRIPTION");
        for (TrackerInfo t : trackers) {
            out.printf("%-" + width + "s  %-9s  %s%n", t.name(), t.available() ? "yes" : "no", t.description());
            if (!t.available()) {
                out.printf("%-" + width + "s  %-9s  why not: %s%n", "", "", t.reason());
            }
        }
        return 0;
    }
}
