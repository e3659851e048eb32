package dev.ferry.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.ferry.migration.bootstrap.PluginInfo;
import dev.ferry.migration.bootstrap.Plugins;

import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** How {@code ferry trackers} and {@code ferry devices} print what they found. */
final class PluginListing {

    private PluginListing() {
    }

    /**
     * Prints a table (with "why not" under each unavailable one) and the plugins that failed to
     * load, or a JSON array of {name, available, reason, description} in which a plugin that
     * failed is a row named after its jar.
     */
    static void print(PrintWriter out, List<PluginInfo> found, List<Plugins.Problem> problems, boolean json)
            throws Exception {
        if (json) {
            found = new ArrayList<>(found);
            for (Plugins.Problem p : problems) {
                found.add(new PluginInfo(p.source(), false, p.reason(), "a plugin that failed to load"));
            }
            List<Map<String, Object>> rows = new ArrayList<>();
            for (PluginInfo t : found) {
                Map<String, Object> row = new LinkedHashMap<>();
                row.put("name", t.name());
                row.put("available", t.available());
                row.put("reason", t.reason());
                row.put("description", t.description());
                rows.add(row);
            }
            out.println(new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(rows));
            return;
        }
        int width = Math.max(4, found.stream().mapToInt(t -> t.name().length()).max().orElse(4));
        out.printf("%-" + width + "s  %-9s  %s%n", "NAME", "AVAILABLE", "DESCRIPTION");
        for (PluginInfo t : found) {
            out.printf("%-" + width + "s  %-9s  %s%n", t.name(), t.available() ? "yes" : "no", t.description());
            if (!t.available()) {
                out.printf("%-" + width + "s  %-9s  why not: %s%n", "", "", t.reason());
            }
        }
        if (!problems.isEmpty()) {
            out.println();
            out.println("Plugins that failed to load:");
            for (Plugins.Problem p : problems) {
                out.println("  " + p.source() + ": " + p.reason());
            }
        }
    }
}
