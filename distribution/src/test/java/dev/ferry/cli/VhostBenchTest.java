package dev.ferry.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code ferry bench vhost}, short: every configuration and mode measured, one scan per sync when elected. */
class VhostBenchTest {

    @Test
    void everyConfigurationAndModeIsMeasuredAndTheElectedLoggerScansOncePerSync() throws Exception {
        FerryCliTest.Run r = FerryCliTest.ferry("bench", "vhost", "--mem", "256M", "--seconds", "0.2", "--runs", "1",
                "--json");
        assertEquals(0, r.status(), r.err());
        JsonNode o = new ObjectMapper().readTree(r.out());
        JsonNode rows = o.get("rows");
        assertEquals(VhostBench.CONFIGS.size() * VhostBench.MODES.size(), rows.size(), r.out());
        for (JsonNode row : rows) {
            int devs = row.get("devices").asInt() * row.get("queue-pairs").asInt();
            long iterations = row.get("iterations").asLong();
            assertTrue(iterations > 10, row.toString());
            double scansPerSync = row.get("section-scans").asDouble() / iterations;
            // A scan per sync per scanning dev (the warm-up iterations before the count are left out).
            double expected = row.get("log-scan").asText().equals("elected") ? 1 : devs;
            assertEquals(expected, scansPerSync, 0.01 * expected + 0.01, row.toString());
            assertTrue(row.get("sync-us").asDouble() > 0 && row.get("sync-share").asDouble() <= 1, row.toString());
        }
        assertTrue(o.get("elected-48-vs-1").asDouble() > 0, r.out());
    }

    @Test
    void badOptionsAreOneLineUsageErrors() {
        assertTrue(FerryCliTest.usageError(FerryCliTest.ferry("bench", "vhost", "--runs", "0")).contains("--runs"));
    }
}
