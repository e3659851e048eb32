package dev.ferry.cli;

import org.junit.jupiter.api.Test;

import java.io.IOException;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code ferry bench sync-cost}: reading the C probe, and its refusals (the measurement itself needs KVM). */
class SyncCostBenchTest {

    /** Output of kvmbench.c as it ran inside kvm-in-tcg (stderr and stdout together). */
    private static final String MANUAL = """
            manual protect2 check=3
            pass 0: dirty=16384 run=700000us io=320.1us scan/harvest=61.0us clear=3100.0us total=3481.1us
            pass 1: dirty=16384 run=690000us io=310.2us scan/harvest=46.9us clear=3036.3us total=3393.4us
            C manual mem=64MiB pages=16384 passes=6: median io(get_dirty_log|reset)=310.2us scan(harvest)=46.9us \
            clear=3036.3us total=3411.1us guest_pass=684234us ring_full_exits=0 chunk=0
            """;

    @Test
    void readsTheProbesMedians() throws IOException {
        SyncCostBench.Figures f = SyncCostBench.parseProbe(MANUAL, true);
        assertEquals(310.2, f.fetchUs());
        assertEquals(46.9, f.scanUs());
        assertEquals(3036.3, f.clearUs());
        assertEquals(3411.1, f.totalUs());
        assertEquals(310.2 + 3036.3, f.kernelUs(), 1e-9, "manual protect: GET and CLEAR are both the kernel's");
        assertEquals(16384, f.pages());
        assertEquals(3411.1 * 1000 / 16384, f.nanosPerPage(), 1e-9);
        assertEquals(310.2, SyncCostBench.parseProbe(MANUAL.replace("C manual", "C bitmap"), false).kernelUs(),
                "without manual protect the probe's clear column times nothing");
    }

    @Test
    void aProbeThatLostPagesOrPrintedNoSummaryIsNotBelieved() {
        IOException lost = assertThrows(IOException.class, () -> SyncCostBench.parseProbe(
                "WARNING pass 2: 16000 unique dirty pfns, expected 16384 (lost entries)\n" + MANUAL, false));
        assertTrue(lost.getMessage().startsWith("C probe lost pages: WARNING pass 2"), lost.getMessage());
        IOException none = assertThrows(IOException.class, () -> SyncCostBench.parseProbe("usage\n", false));
        assertEquals("C probe printed no summary line: usage", none.getMessage());
    }

    @Test
    void badOptionsAreOneLineUsageErrors() {
        assertTrue(FerryCliTest.usageError(FerryCliTest.ferry("bench", "sync-cost", "--passes", "0"))
                .contains("--passes must be 1 to 100"));
        assertTrue(FerryCliTest.usageError(FerryCliTest.ferry("bench", "sync-cost", "--c-probe", "/nonexistent/kvmbench"))
                .contains("--c-probe /nonexistent/kvmbench is not an executable file"));
    }
}
