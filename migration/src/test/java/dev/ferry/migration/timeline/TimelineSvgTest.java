package dev.ferry.migration.timeline;

import dev.ferry.machine.MachineConfig;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import dev.ferry.migration.Incoming;
import dev.ferry.migration.Migration;
import dev.ferry.migration.MigrationParameters;
import dev.ferry.migration.MigrationStats;
import dev.ferry.migration.MigrationStatus;
import dev.ferry.migration.bootstrap.Bootstrap;
import dev.ferry.migration.bootstrap.TrackedMachine;
import dev.ferry.migration.channel.Channels;
import dev.ferry.migration.channel.Connection;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.NodeList;

import javax.xml.parsers.DocumentBuilderFactory;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.ToDoubleFunction;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The timeline of a real migration, drawn and read back as a browser would parse it: every
 * series holds the figures the migration reported, its points are where the axes put them, and
 * each sync, pass end and the switchover is marked.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class TimelineSvgTest {

    private static final long MIB = 1L << 20;
    private static final double MIB_D = MIB;

    @Test
    void theTimelineOfAMigrationHoldsWhatItReported() throws Exception {
        // 16 MiB over an 8 MiB/s link while the guest rewrites 4 MiB: a first pass of about two
        // seconds (so syncs within it), then the working set fits the 1 s limit.
        Duration limit = Duration.ofSeconds(1);
        Workload w = new Workload(Pattern.RANDOM, 0, 4 * MIB, 24, Workload.PAGE_SIZE, 0.1, 0.9, 11);
        Bootstrap b = Bootstrap.create();
        Timeline timeline = new Timeline();
        MigrationStats stats;
        try (TrackedMachine src = b.build(b.plan("soft", "soft", Map.of()),
                MachineConfig.of(16 * MIB, 1, w).withPreallocate(false))) {
            src.machine().ram().host().fill((byte) 7);
            Connection[] pair = Channels.inProcessPair();
            CompletableFuture<Incoming.Result> dst = CompletableFuture.supplyAsync(() -> {
                try {
                    return b.incoming(16 * MIB, false, Incoming.DeviceLoad.BATCHED).receive(pair[1]);
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
            });
            stats = new Migration(src, pair[0], MigrationParameters.defaults().withMaxBandwidth(8 * MIB)
                    .withDowntimeLimit(limit).withTimeout(Duration.ofSeconds(30))).run(timeline);
            assertEquals(MigrationStatus.COMPLETED, stats.status(), stats.error());
            dst.get(30, TimeUnit.SECONDS).machine().close();
        }
        assertEquals(stats, timeline.last().orElseThrow(), "the last figures are the result");
        assertTrue(timeline.syncs().size() >= 2, "syncs within the first pass: " + timeline.syncs());
        // Every sync while iterating is marked: all but the one ending setup and the one at switchover.
        assertEquals(stats.dirtySyncCount() - 2, timeline.syncs().size(), timeline.syncs().toString());
        assertEquals(stats.iterations(), timeline.passEnds().size(), timeline.passEnds().toString());

        String svg = TimelineSvg.render(timeline, limit, "ferry migrate --mem 16M <test>");
        Document doc = DocumentBuilderFactory.newInstance().newDocumentBuilder()
                .parse(new ByteArrayInputStream(svg.getBytes(StandardCharsets.UTF_8)));
        assertEquals("svg", doc.getDocumentElement().getTagName());
        assertTrue(svg.contains("&lt;test&gt;"), "the title is escaped");

        List<MigrationStats> drawn = timeline.samples().stream()
                .filter(s -> s.status() != MigrationStatus.SETUP).toList();
        assertTrue(drawn.size() >= 10, "a sample about every 100 ms: " + drawn.size());
        series(doc, "remaining", drawn, s -> s.remaining() / MIB_D);
        series(doc, "fits-downtime-limit", drawn, s -> s.mbps() * 1e6 / 8 * limit.toMillis() / 1000 / MIB_D);
        series(doc, "dirty-rate", drawn, s -> s.dirtyPagesRate() * 4096 / MIB_D);
        series(doc, "throughput", drawn, s -> s.mbps() * 1e6 / 8 / MIB_D);
        series(doc, "throttle", drawn, s -> s.throttlePercent());
        assertTrue(drawn.stream().anyMatch(s -> s.remaining() > 8 * MIB), "the remaining bytes start high");
        assertEquals(0, drawn.getLast().remaining(), "and end at nothing");

        assertEquals(timeline.syncs(), times(doc, "sync"));
        assertEquals(timeline.passEnds(), times(doc, "pass-end"));
        Element limitBox = byId(doc, "downtime-limit");
        assertEquals("1000", limitBox.getAttribute("data-ms"));
        Element switchover = byId(doc, "switchover");
        assertTrue(switchover.getTextContent().contains("downtime " + stats.downtimeMs() + " ms"),
                switchover.getTextContent());
        // The downtime box starts where the limit's does, and is no wider unless it overran.
        assertEquals(limitBox.getAttribute("x"), switchover.getAttribute("x"));
        if (stats.downtimeMs() <= limit.toMillis()) {
            assertTrue(Double.parseDouble(switchover.getAttribute("width"))
                    <= Double.parseDouble(limitBox.getAttribute("width")) + 1.5);
        }
        assertNotNull(byId(doc, "setup"));
    }

    @Test
    void aFailedMigrationHasNoSwitchover() {
        Timeline t = new Timeline();
        t.accept(stats(MigrationStatus.ACTIVE, 100, 3, 0));
        t.accept(stats(MigrationStatus.ACTIVE, 200, 4, 1));
        t.accept(stats(MigrationStatus.FAILED, 250, 4, 1));
        assertTrue(t.switchover().isEmpty());
        assertEquals(List.of(100L, 200L), t.syncs());
        assertEquals(List.of(200L), t.passEnds());
        String svg = TimelineSvg.render(t, Duration.ofMillis(300), "failed");
        assertFalse(svg.contains("id=\"switchover\""));
        assertTrue(svg.contains("failed: boom"), "the summary says how it ended");
    }

    @Test
    void niceCeilings() {
        assertEquals(1, TimelineSvg.niceCeil(1));
        assertEquals(2, TimelineSvg.niceCeil(1.01));
        assertEquals(5, TimelineSvg.niceCeil(4.2));
        assertEquals(10, TimelineSvg.niceCeil(6));
        assertEquals(2000, TimelineSvg.niceCeil(1234));
        assertEquals(0.05, TimelineSvg.niceCeil(0.042), 1e-12);
    }

    private static MigrationStats stats(MigrationStatus status, long t, long syncs, long iterations) {
        return new MigrationStats(status, status == MigrationStatus.FAILED ? "boom" : "", t, 10, 0, 0, 0, 0, 0, 0, 0, 0,
                syncs, 0, 0, 0, iterations, 0, List.of("soft"));
    }

    /** Asserts the polyline {@code id} holds {@code expected} of each sample, and is drawn where its axis says. */
    private static void series(Document doc, String id, List<MigrationStats> samples,
                               ToDoubleFunction<MigrationStats> expected) {
        Element line = byId(doc, id);
        long[] times = Arrays.stream(line.getAttribute("data-times").split(",")).mapToLong(Long::parseLong).toArray();
        double[] values = Arrays.stream(line.getAttribute("data-values").split(","))
                .mapToDouble(Double::parseDouble).toArray();
        String[] points = line.getAttribute("points").split(" ");
        assertEquals(samples.size(), times.length, id);
        assertEquals(samples.size(), values.length, id);
        assertEquals(samples.size(), points.length, id);
        Element panel = (Element) line.getParentNode();
        double yMax = Double.parseDouble(panel.getAttribute("data-y-max"));
        Element frame = (Element) panel.getElementsByTagName("rect").item(0);
        double top = Double.parseDouble(frame.getAttribute("y"));
        double height = Double.parseDouble(frame.getAttribute("height"));
        for (int i = 0; i < samples.size(); i++) {
            double v = expected.applyAsDouble(samples.get(i));
            assertEquals(samples.get(i).totalTimeMs(), times[i], id + " time " + i);
            assertEquals(v, values[i], 0.0005 + v * 1e-6, id + " value " + i);
            double y = Double.parseDouble(points[i].split(",")[1]);
            double fromPixels = (top + height - y) / height * yMax;
            assertEquals(Math.min(v, yMax), fromPixels, yMax / height, id + " point " + i);
        }
    }

    private static List<Long> times(Document doc, String cls) {
        List<Long> out = new ArrayList<>();
        NodeList lines = doc.getElementsByTagName("line");
        for (int i = 0; i < lines.getLength(); i++) {
            Element e = (Element) lines.item(i);
            if (cls.equals(e.getAttribute("class"))) {
                out.add(Long.parseLong(e.getAttribute("data-t")));
            }
        }
        return out;
    }

    private static Element byId(Document doc, String id) {
        NodeList all = doc.getElementsByTagName("*");
        for (int i = 0; i < all.getLength(); i++) {
            Element e = (Element) all.item(i);
            if (id.equals(e.getAttribute("id"))) {
                return e;
            }
        }
        throw new AssertionError("no element with id " + id);
    }
}
