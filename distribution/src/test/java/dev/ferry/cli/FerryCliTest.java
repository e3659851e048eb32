package dev.ferry.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import org.junit.jupiter.api.io.TempDir;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.io.StringWriter;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** The command line's contract: exit codes, one-line errors without stack traces, JSON output. */
class FerryCliTest {

    record Run(int status, String out, String err) {
        List<String> errLines() {
            return err.lines().filter(l -> !l.isBlank()).toList();
        }
    }

    @BeforeAll
    static void noDebug() {
        assumeTrue(System.getenv("FERRY_DEBUG") == null, "FERRY_DEBUG prints stack traces on purpose");
    }

    static Run ferry(String... args) {
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        int status = Ferry.execute(args, new PrintWriter(out, true), new PrintWriter(err, true));
        return new Run(status, out.toString(), err.toString());
    }

    /** Status 2 and exactly one line on standard error, no stack trace; @return that line */
    static String usageError(Run r) {
        assertEquals(2, r.status(), () -> "status; err: " + r.err());
        List<String> lines = r.errLines();
        assertEquals(1, lines.size(), () -> "one line on err, got:\n" + r.err());
        assertFalse(lines.getFirst().trim().startsWith("at "), r.err());
        assertFalse(r.err().contains("Exception"), () -> "no exception class names: " + r.err());
        return lines.getFirst();
    }

    @Test
    void trackersJsonIsAnArrayOfTrackers() throws Exception {
        Run r = ferry("trackers", "--json");
        assertEquals(0, r.status(), r.err());
        assertEquals("", r.err());
        JsonNode a = new ObjectMapper().readTree(r.out());
        assertTrue(a.isArray() && !a.isEmpty(), r.out());
        boolean soft = false;
        for (JsonNode t : a) {
            assertTrue(t.get("name").isTextual(), t.toString());
            assertTrue(t.get("available").isBoolean(), t.toString());
            assertTrue(t.get("reason").isTextual(), t.toString());
            assertTrue(t.get("description").isTextual() && !t.get("description").asText().isBlank(), t.toString());
            assertEquals(4, t.size(), "exactly name, available, reason, description: " + t);
            if (!t.get("available").asBoolean()) {
                assertFalse(t.get("reason").asText().isBlank(), "an unavailable tracker says why: " + t);
            }
            if (t.get("name").asText().equals("soft")) {
                soft = true;
                assertTrue(t.get("available").asBoolean());
                assertEquals("", t.get("reason").asText());
            }
        }
        assertTrue(soft, "the soft tracker is listed: " + r.out());
    }

    @Test
    void trackersTable() {
        Run r = ferry("trackers");
        assertEquals(0, r.status(), r.err());
        assertTrue(r.out().startsWith("NAME"), r.out());
        assertTrue(r.out().lines().anyMatch(l -> l.startsWith("soft") && l.contains("yes")), r.out());
    }

    @Test
    void badMigrationParametersNameTheOptionAndTheValue() {
        String msg = usageError(ferry("migrate", "--downtime-limit", "-5"));
        assertTrue(msg.contains("--downtime-limit") && msg.contains("-5"), msg);
        msg = usageError(ferry("migrate", "--timeout", "0"));
        assertTrue(msg.contains("--timeout") && msg.contains("0"), msg);
        msg = usageError(ferry("migrate", "--warmup", "-1"));
        assertTrue(msg.contains("--warmup") && msg.contains("-1"), msg);
        msg = usageError(ferry("migrate", "--vmstate-load", "lazy"));
        assertTrue(msg.contains("--vmstate-load must be batched or per-device, got 'lazy'"), msg);
        msg = usageError(ferry("incoming", "--vmstate-load", "lazy", "tcp:127.0.0.1:0"));
        assertTrue(msg.contains("--vmstate-load"), msg);
        msg = usageError(ferry("incoming", "--mem", "3M", "tcp:127.0.0.1:0"));
        assertTrue(msg.endsWith("--mem must be a positive multiple of 2M, got 3 MiB"), msg);
    }

    @Test
    void anUnreachableDestinationIsAFailureNotAUsageError() {
        for (String to : new String[]{"tcp:127.0.0.1:1", "file:/nonexistent-dir/x.bin"}) {
            Run r = ferry("migrate", "--mem", "64M", "--no-prealloc", "--to", to);
            assertEquals(1, r.status(), r.err());
            assertEquals(1, r.errLines().size(), r.err());
            assertTrue(r.err().contains("cannot open " + to), r.err());
            assertFalse(r.err().contains("Exception"), r.err());
        }
    }

    /** {@code ferry incoming} run on a thread of its own, and the address it waits on. */
    private record Destination(java.util.concurrent.CompletableFuture<Run> run, String address) {
        static Destination start(String... args) throws InterruptedException {
            StringWriter out = new StringWriter();
            StringWriter err = new StringWriter();
            java.util.concurrent.CompletableFuture<Run> run = new java.util.concurrent.CompletableFuture<>();
            Thread.ofPlatform().daemon().start(() -> run.complete(new Run(Ferry.execute(args,
                    new PrintWriter(out, true), new PrintWriter(err, true)), out.toString(), err.toString())));
            java.util.regex.Pattern waiting = java.util.regex.Pattern.compile("waiting on (tcp:\\S+)");
            for (int i = 0; i < 3000 && !run.isDone(); i++) {
                java.util.regex.Matcher m = waiting.matcher(err.toString());
                if (m.find()) {
                    return new Destination(run, m.group(1));
                }
                Thread.sleep(10);
            }
            throw new AssertionError("ferry incoming did not start waiting: " + err);
        }

        Run result() throws Exception {
            return run.get(60, java.util.concurrent.TimeUnit.SECONDS);
        }
    }

    @Test
    void aDestinationStartedForItsGuestsSizeTakesOnlyThatSize() throws Exception {
        // Started for 16 MiB, as QEMU's destination with -m: its RAM is made while it waits.
        Destination d = Destination.start("incoming", "tcp:127.0.0.1:0", "--mem", "16M", "--once", "--run", "0");
        Run source = ferry("migrate", "--mem", "32M", "--no-prealloc", "--to", d.address());
        assertEquals(1, source.status(), source.err());
        Run dst = d.result();
        assertEquals(1, dst.status(), dst.err());
        String why = "the source guest has 32 MiB of RAM, and this destination was started for a guest of 16 MiB "
                + "(incoming --mem): give it the source's size, or leave --mem out";
        assertTrue(source.err().contains(why), source.err());
        assertTrue(dst.err().contains("RAM for a guest of 16 MiB made, and being faulted in while this waits"), dst.err());
        assertTrue(dst.err().contains("rejected: ") && dst.err().contains(why), dst.err());
        assertFalse(source.err().contains("Exception") || dst.err().contains("Exception"), source.err() + dst.err());

        d = Destination.start("incoming", "tcp:127.0.0.1:0", "--mem", "16M", "--once", "--run", "0");
        source = ferry("migrate", "--mem", "16M", "--no-prealloc", "--to", d.address(), "--json");
        assertEquals(0, source.status(), source.err());
        dst = d.result();
        assertEquals(0, dst.status(), dst.err());
        assertTrue(dst.out().contains("verified: the source confirmed the digests"), dst.out());
    }

    @Test
    void migrateDrawsItsTimeline(@TempDir Path dir) throws Exception {
        Path svg = dir.resolve("t.svg");
        Run r = ferry("migrate", "--mem", "32M", "--no-prealloc", "--rate", "40", "--warmup", "100",
                "--timeline", svg.toString(), "--json");
        assertEquals(0, r.status(), r.err());
        JsonNode report = new ObjectMapper().readTree(r.out());
        assertEquals(svg.toString(), report.get("timeline").asText());
        org.w3c.dom.Document doc = javax.xml.parsers.DocumentBuilderFactory.newInstance().newDocumentBuilder()
                .parse(svg.toFile());
        String text = Files.readString(svg);
        for (String id : List.of("remaining", "fits-downtime-limit", "dirty-rate", "throughput", "throttle",
                "switchover", "downtime-limit")) {
            assertTrue(text.contains("id=\"" + id + "\""), id);
        }
        assertTrue(doc.getElementsByTagName("polyline").getLength() == 5, text);
        assertTrue(text.contains("ferry migrate --mem 32M"), "the title is the command line");
        // Where it cannot be written, the migration does not start.
        String msg = usageError(ferry("migrate", "--timeline", "/nonexistent-dir/t.svg"));
        assertTrue(msg.contains("--timeline /nonexistent-dir/t.svg") && msg.contains("does not exist"), msg);
        msg = usageError(ferry("migrate", "--timeline", dir.toString()));
        assertTrue(msg.contains("is a directory"), msg);
    }

    @Test
    void aGuestTheHostCannotHoldIsRefusedBeforeAnythingIsAllocated() {
        long available = dev.ferry.machine.HostMemory.probe().available();
        assumeTrue(available < (1L << 50), "this host's available memory is not known");
        String tooBig = ((available >> 30) * 4 + 2) + "G";
        for (String[] line : new String[][]{
                {"migrate", "--mem", tooBig},
                {"migrate", "--mem", tooBig, "--no-prealloc", "--to", "file:/tmp/never-written.bin"},
                {"dirtyrate", "--mem", tooBig, "--no-prealloc"},
                {"incoming", "--mem", tooBig, "tcp:127.0.0.1:0"},
                {"audit", "--trackers", "soft", "--mem", tooBig}}) {
            String msg = usageError(ferry(line));
            assertTrue(msg.contains("--mem ") && msg.contains("available") && msg.contains("use a smaller --mem"),
                    String.join(" ", line) + ": " + msg);
        }
        // One copy fits, two do not: an in-process destination counts, preallocated or not.
        String twoThirds = (available * 2 / 3 >> 21 << 1) + "M";
        String msg = usageError(ferry("migrate", "--mem", twoThirds, "--no-prealloc"));
        assertTrue(msg.contains("the guest and its destination in this process need"), msg);
    }

    @Test
    void benchHelpPrintsNoPicocliWarning() {
        java.io.PrintStream saved = System.err;
        java.io.ByteArrayOutputStream captured = new java.io.ByteArrayOutputStream();
        System.setErr(new java.io.PrintStream(captured, true));
        try {
            for (String bench : new String[]{"migration", "bitmap-lock", "trackers", "sync-cost", "vhost",
                    "vmstate-load"}) {
                Run r = ferry("bench", bench, "--help");
                assertEquals(0, r.status(), bench + ": " + r.err());
                assertTrue(r.out().contains("--check"), bench + " has --check: " + r.out());
                assertFalse((r.out() + r.err()).contains("WARN"), bench + ": " + r.out() + r.err());
            }
        } finally {
            System.setErr(saved);
        }
        assertFalse(captured.toString().contains("WARN"), "picocli warned on standard error: " + captured);
    }

    @Test
    void devicesListsTheVhostDevices() throws Exception {
        Run r = ferry("devices");
        assertEquals(0, r.status(), r.err());
        assertTrue(r.out().lines().anyMatch(l -> l.startsWith("vhost-net") && l.contains("yes")), r.out());
        assertTrue(r.out().lines().anyMatch(l -> l.startsWith("vhost-blk") && l.contains("yes")), r.out());
        JsonNode a = new ObjectMapper().readTree(ferry("devices", "--json").out());
        assertTrue(a.isArray() && a.size() >= 2, a.toString());
        for (JsonNode d : a) {
            assertEquals(4, d.size(), "exactly name, available, reason, description: " + d);
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"disk:queues=1|type must be net or blk", "net:queues=0|queues must be 1 to",
            "net:speed=5|does not understand speed", "net:rate=fast|rate", "net:count=0|count must be",
            "blk:backend=remote|backend must be kernel or user", "net:queues=256,buffers=65536|give it more memory",
            "net:queues|bad option", "net:log-scan=some|log-scan"})
    void badVhostSpecsAreOneLineUsageErrors(String c) {
        String[] parts = c.split("\\|");
        String msg = usageError(ferry("dirtyrate", "--mem", "64M", "--seconds", "1", "--no-prealloc", "--accel", "soft",
                "--vhost", parts[0]));
        assertTrue(msg.contains(parts[1]), msg);
        msg = usageError(ferry("dirtyrate", "--mem", "64M", "--seconds", "1", "--vhost", "net", "--vhost-log-scan", "x"));
        assertTrue(msg.contains("--vhost-log-scan"), msg);
        msg = usageError(ferry("dirtyrate", "--mem", "64M", "--seconds", "1", "--device", "gpu"));
        assertTrue(msg.contains("unknown device type 'gpu'") && msg.contains("vhost-net"), msg);
    }

    @ParameterizedTest
    @ValueSource(strings = {"trackers --bogus", "--bogus", "dirtyrate --bogus", "dirtyrate --vcpus many", "nosuchcommand", ""})
    void badCommandLinesAreOneLineUsageErrors(String line) {
        String[] args = line.isEmpty() ? new String[0] : line.split(" ");
        Run r = ferry(args);
        String msg = usageError(r);
        assertTrue(msg.startsWith("ferry"), msg);
        assertEquals("", r.out(), "no usage dump on out");
    }

    @Test
    void badMemorySize() {
        String msg = usageError(ferry("dirtyrate", "--mem", "12X"));
        assertTrue(msg.contains("12X"), msg);
        msg = usageError(ferry("dirtyrate", "--mem", "3M", "--seconds", "1", "--no-prealloc"));
        assertTrue(msg.contains("--mem") && msg.contains("2 MiB"), msg);
        usageError(ferry("dirtyrate", "--mem", "0", "--seconds", "1", "--no-prealloc"));
        msg = usageError(ferry("dirtyrate", "--mem", "64M", "--vcpus", "0", "--seconds", "1", "--no-prealloc"));
        assertTrue(msg.contains("--vcpus"), msg);
    }

    @Test
    void badMeasurementParameters() {
        assertTrue(usageError(ferry("dirtyrate", "--mem", "64M", "--seconds", "0")).contains("--seconds"));
        assertTrue(usageError(ferry("dirtyrate", "--mem", "64M", "--seconds", "1", "--sync-interval", "5000"))
                .contains("--sync-interval"));
        assertTrue(usageError(ferry("dirtyrate", "--mem", "64M", "--seconds", "1", "--rate", "-1")).contains("--rate"));
        assertTrue(usageError(ferry("dirtyrate", "--mem", "64M", "--seconds", "1", "--write-size", "0")).contains("--write-size"));
        assertTrue(usageError(ferry("dirtyrate", "--workload", "zigzag")).contains("zigzag"));
    }

    @Test
    void unknownTrackerNamesTheAvailableOnes() {
        String msg = usageError(ferry("dirtyrate", "--trackers", "nope", "--mem", "64M", "--seconds", "1", "--no-prealloc"));
        assertTrue(msg.contains("nope"), msg);
        assertTrue(msg.contains("available here:") && msg.contains("soft"), msg);
    }

    @Test
    void unknownAcceleratorAndMismatchedTracker() {
        String msg = usageError(ferry("dirtyrate", "--accel", "tcg", "--mem", "64M", "--seconds", "1"));
        assertTrue(msg.contains("tcg") && msg.contains("soft"), msg);
        msg = usageError(ferry("dirtyrate", "--accel", "soft", "--trackers", "soft", "-o", "x=1", "--mem", "64M", "--seconds", "1"));
        assertTrue(msg.contains("option x"), msg);
    }

    @Test
    void shortDirtyRateRunAsJson() throws Exception {
        Run r = ferry("dirtyrate", "--mem", "64M", "--seconds", "1", "--no-prealloc", "--accel", "soft", "--json",
                "--rate", "50", "--workload", "sequential");
        assertEquals(0, r.status(), r.err());
        assertEquals("", r.err(), "quiet: no progress bar when err is not a terminal");
        JsonNode o = new ObjectMapper().readTree(r.out());
        assertTrue(o.has("dirty-rate"), r.out());
        double rate = o.get("dirty-rate").asDouble();
        assertTrue(rate > 25 && rate < 75, "dirty rate " + rate + " for a 50 MiB/s target");
        assertEquals("soft", o.get("accelerator").asText());
        assertEquals("soft", o.get("trackers").get(0).asText());
        assertEquals("sequential", o.get("workload").asText());
        assertEquals(64L << 20, o.get("memory").asLong());
        assertEquals(1, o.get("vcpus").asInt());
        assertTrue(o.get("syncs").asLong() >= 5, r.out());
    }

    @Test
    void shortDirtyRateRunAsText() {
        Run r = ferry("dirtyrate", "--mem", "16M", "--seconds", "0.3", "--no-prealloc", "--accel", "soft", "--vcpus", "2");
        assertEquals(0, r.status(), r.err());
        assertTrue(r.out().startsWith("dirty rate"), r.out());
        assertTrue(r.out().contains("16 MiB RAM, 2 vCPUs, random workload, soft accelerator"), r.out());
    }

    @Test
    void helpAndVersion() {
        Run help = ferry("--help");
        assertEquals(0, help.status());
        assertTrue(help.out().contains("trackers") && help.out().contains("dirtyrate"), help.out());
        Run version = ferry("--version");
        assertEquals(0, version.status());
        assertTrue(version.out().startsWith("ferry "), version.out());
    }

    @Test
    void auditComparesTrackersAndFindsNothingMissed() throws Exception {
        Run r = ferry("audit", "--accel", "soft", "--trackers", "soft", "--mem", "16M", "--vcpus", "2",
                "--syncs", "3", "--sync-interval", "20", "--json");
        assertEquals(0, r.status(), r.err());
        JsonNode o = new ObjectMapper().readTree(r.out());
        assertEquals(3, o.get("syncs").size(), r.out());
        assertEquals(0, o.get("total").get("missed").asLong(), r.out());
        assertTrue(o.get("total").get("written").asLong() > 0, "the guest wrote: " + r.out());
        assertTrue(o.get("total").get("reported").get("soft").asLong() >= o.get("total").get("written").asLong(),
                "soft reports at least the written pages: " + r.out());
    }

    @Test
    void auditRefusesBadCounts() {
        assertTrue(usageError(ferry("audit", "--syncs", "0")).contains("--syncs"));
        assertTrue(usageError(ferry("audit", "--sync-interval", "0")).contains("--sync-interval"));
    }

    @Test
    void aPluginPathThatIsNotADirectoryIsListedAsAProblem() throws Exception {
        Run r = ferry("--plugin-path", "/nonexistent-ferry-plugins", "trackers");
        assertEquals(0, r.status(), r.err());
        assertTrue(r.out().contains("Plugins that failed to load:"), r.out());
        assertTrue(r.out().contains("/nonexistent-ferry-plugins: not a directory"), r.out());
        JsonNode a = new ObjectMapper().readTree(ferry("--plugin-path", "/nonexistent-ferry-plugins", "trackers",
                "--json").out());
        boolean listed = false;
        for (JsonNode t : a) {
            listed |= t.get("name").asText().equals("/nonexistent-ferry-plugins") && !t.get("available").asBoolean();
        }
        assertTrue(listed, a.toString());
    }
}
