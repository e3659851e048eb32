package dev.ferry.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code ferry bench vmstate-load}, short: every configuration loads its vCPU and devices with
 * one commit batched and one per device otherwise, and batched makes fewer listener calls.
 */
class VmstateLoadBenchTest {

    @Test
    void batchedLoadsCommitOnceAndPerDeviceOncePerDevice() throws Exception {
        FerryCliTest.Run r = FerryCliTest.ferry("bench", "vmstate-load", "--accel", "soft", "--mem", "64M", "--runs",
                "1", "--json");
        assertEquals(0, r.status(), r.err());
        JsonNode o = new ObjectMapper().readTree(r.out());
        JsonNode rows = o.get("rows");
        assertEquals(VmstateLoadBench.CONFIGS.size() * 2, rows.size(), r.out());
        for (int i = 0; i < rows.size(); i += 2) {
            JsonNode per = rows.get(i);
            JsonNode batched = rows.get(i + 1);
            VmstateLoadBench.Config c = VmstateLoadBench.CONFIGS.get(i / 2);
            int devices = c.nets() + c.blks();
            assertEquals("per-device", per.get("load").asText());
            assertEquals(1 + devices, per.get("sections").asInt(), per.toString());
            assertEquals(devices, per.get("commits").asDouble(), per.toString());
            assertEquals(1, batched.get("commits").asDouble(), batched.toString());
            assertEquals(1, batched.get("renders").asDouble(), batched.toString());
            assertTrue(batched.get("listener-calls").asDouble() < per.get("listener-calls").asDouble(), r.out());
        }
        assertTrue(o.get("load-ratio").asDouble() > 1, r.out());
    }

    @Test
    void badOptionsAreOneLineUsageErrors() {
        assertTrue(FerryCliTest.usageError(FerryCliTest.ferry("bench", "vmstate-load", "--runs", "0"))
                .contains("--runs"));
    }
}
