package dev.ferry.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.ferry.kvm.KvmTestSupport;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code ferry bench sync-cost} on real KVM: every mode runs, and in every pass each tracker
 * reports every page the guest wrote. The 1024-entry ring is smaller than what the guest writes
 * between two syncs, so the vCPU reaps its own ring on the way (and may hit ring-full exits).
 */
@Tag(KvmTestSupport.TAG)
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class KvmSyncCostBenchTest {

    @BeforeAll
    static void needKvm() {
        KvmTestSupport.assumeKvm();
    }

    @Test
    void everyModeReportsEveryWrittenPage() throws Exception {
        FerryCliTest.Run r = FerryCliTest.ferry("bench", "sync-cost", "--mem", "16M", "--passes", "2", "--warmup", "0",
                "--ring-sizes", "1024,8192", "--json");
        assertEquals(0, r.status(), r.err());
        JsonNode modes = new ObjectMapper().readTree(r.out()).get("modes");
        assertEquals(4, modes.size(), r.out());
        long workingSetPages = (16L << 20) / 4096 - (2L << 20) / 4096; // RAM above the kvm accelerator's 2 MiB
        for (JsonNode m : modes) {
            assertEquals(0, m.get("lost-pages").asLong(), m.toString());
            double pages = m.get("ferry").get("pages").asDouble();
            // The working set, plus at most the code and page-table pages KVM reports on its own.
            assertTrue(pages >= workingSetPages && pages <= workingSetPages + 8, m.toString());
            assertTrue(m.get("ferry").get("totalUs").asDouble() > 0, m.toString());
        }
    }
}
