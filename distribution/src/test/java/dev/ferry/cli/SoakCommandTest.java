package dev.ferry.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.HashSet;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The short soak CI runs: randomized migrations with faults, every one checked. */
class SoakCommandTest {

    @Test
    void aShortSoakFindsNothing() throws Exception {
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        int status = Ferry.execute(new String[]{"soak", "--runs", "24", "--seed", "1000", "--accel", "soft", "--json"},
                new PrintWriter(out, true), new PrintWriter(err, true));
        assertEquals(0, status, err.toString());
        JsonNode runs = new ObjectMapper().readTree(out.toString()).get("runs");
        assertEquals(24, runs.size());
        Set<String> outcomes = new HashSet<>();
        Set<String> transports = new HashSet<>();
        for (JsonNode r : runs) {
            outcomes.add(r.get("outcome").asText());
            transports.add(r.get("transport").asText());
        }
        assertTrue(outcomes.contains("verified") && outcomes.contains("failed safely"), outcomes.toString());
        assertEquals(Set.of("in-process", "tcp", "unix", "file"), transports);
    }

    @Test
    void badArgumentsAreOneLineUsageErrors() {
        String msg = FerryCliTest.usageError(FerryCliTest.ferry("soak", "--runs", "0"));
        assertTrue(msg.contains("--runs"), msg);
        msg = FerryCliTest.usageError(FerryCliTest.ferry("soak", "--accel", "warp"));
        assertTrue(msg.contains("unknown accelerator 'warp'"), msg);
    }
}
