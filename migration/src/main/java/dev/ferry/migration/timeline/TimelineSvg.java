package dev.ferry.migration.timeline;

import dev.ferry.migration.MigrationStats;
import dev.ferry.migration.MigrationStatus;

import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.function.ToDoubleFunction;

/**
 * Draws a {@link Timeline} as a plain SVG file, three panels over one time axis: the bytes left
 * to send (and the most that would fit the downtime limit at the current throughput: switchover
 * comes when the first falls under the second), the guest's dirty rate against the throughput,
 * and the auto-converge throttle. Syncs, the ends of passes, setup and the switchover (its
 * downtime against the limit) are marked across all three.
 *
 * <p>Each series is a {@code polyline} with its id, and carries the figures it was drawn from in
 * {@code data-times} (ms) and {@code data-values} (the panel's unit), so that a script, or a
 * test, reads the numbers back rather than the pixels.
 */
public final class TimelineSvg {

    private static final double MIB = 1 << 20;
    private static final int WIDTH = 960;
    private static final int LEFT = 80;
    private static final int RIGHT = 30;
    private static final int TOP = 60;
    private static final int PANEL = 150;
    private static final int GAP = 45;
    private static final int PLOT = WIDTH - LEFT - RIGHT;

    /** A line in a panel. */
    private record Series(String id, String label, String color, boolean dashed, ToDoubleFunction<MigrationStats> value) {
    }

    /** A panel: its series share a y axis. */
    private record Panel(String title, String unit, List<Series> series) {
    }

    private TimelineSvg() {
    }

    /**
     * @param timeline      what the migration reported
     * @param downtimeLimit the limit it ran with
     * @param title         the first line of the picture, e.g. the command line
     * @return the SVG document
     */
    public static String render(Timeline timeline, Duration downtimeLimit, String title) {
        List<MigrationStats> samples = timeline.samples().stream()
                .filter(s -> s.status() != MigrationStatus.SETUP).toList();
        double limitSeconds = downtimeLimit.toNanos() / 1e9;
        List<Panel> panels = List.of(
                new Panel("remaining", "MiB", List.of(
                        new Series("remaining", "remaining", "#1f77b4", false, s -> s.remaining() / MIB),
                        new Series("fits-downtime-limit", "fits the downtime limit at the current throughput",
                                "#7f7f7f", true, s -> s.sentBytesPerSecond() * limitSeconds / MIB))),
                new Panel("rates", "MiB/s", List.of(
                        new Series("dirty-rate", "dirty rate", "#d62728", false, s -> s.dirtyBytesPerSecond() / MIB),
                        new Series("throughput", "throughput", "#2ca02c", false, s -> s.sentBytesPerSecond() / MIB))),
                new Panel("throttle", "%", List.of(
                        new Series("throttle", "auto-converge throttle", "#9467bd", false, s -> s.throttlePercent()))));
        long endMs = samples.isEmpty() ? 1 : Math.max(1, samples.getLast().totalTimeMs());
        MigrationStats last = samples.isEmpty() ? null : samples.getLast();
        long switchover = timeline.switchover().orElse(-1L);
        if (last != null && switchover >= 0) {
            endMs = Math.max(endMs, switchover + Math.max(last.downtimeMs(), downtimeLimit.toMillis()));
        }
        double xStep = niceCeil(endMs / 8.0);
        double xMax = Math.ceil(endMs / xStep) * xStep;
        int height = TOP + panels.size() * (PANEL + GAP) + 30;
        StringBuilder svg = new StringBuilder();
        svg.append(String.format(Locale.ROOT, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                + "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">%n", WIDTH, height, WIDTH, height));
        svg.append(String.format(Locale.ROOT, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>%n", WIDTH, height));
        svg.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"20\" font-size=\"14\" font-weight=\"bold\">%s</text>%n",
                LEFT, escape(title)));
        if (last != null) {
            svg.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"38\">%s</text>%n", LEFT, escape(summary(last,
                    downtimeLimit))));
        }
        int bottom = TOP + panels.size() * (PANEL + GAP) - GAP;
        // Markers first, under the series: setup, syncs, pass ends, switchover.
        if (last != null) {
            rect(svg, "setup", x(0, xMax), TOP, x(last.setupTimeMs(), xMax) - x(0, xMax), bottom - TOP, "#eeeeee",
                    "setup " + last.setupTimeMs() + " ms");
        }
        for (long t : timeline.syncs()) {
            svg.append(String.format(Locale.ROOT, "<line class=\"sync\" data-t=\"%d\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" "
                    + "y2=\"%d\" stroke=\"#cccccc\" stroke-width=\"1\"/>%n", t, x(t, xMax), TOP, x(t, xMax), bottom));
        }
        List<Long> passes = timeline.passEnds();
        double lastLabel = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < passes.size(); i++) {
            long t = passes.get(i);
            svg.append(String.format(Locale.ROOT, "<line class=\"pass-end\" data-t=\"%d\" x1=\"%.1f\" y1=\"%d\" "
                    + "x2=\"%.1f\" y2=\"%d\" stroke=\"#555555\" stroke-dasharray=\"4 3\"/>%n", t, x(t, xMax), TOP - 6,
                    x(t, xMax), bottom));
            // Passes close together keep their lines; only labels with room are written.
            if (x(t, xMax) - lastLabel >= 40) {
                lastLabel = x(t, xMax);
                svg.append(String.format(Locale.ROOT, "<text x=\"%.1f\" y=\"%d\" font-size=\"10\" "
                        + "text-anchor=\"middle\">pass %d</text>%n", x(t, xMax), TOP - 9, i + 1));
            }
        }
        if (last != null && switchover >= 0) {
            double x0 = x(switchover, xMax);
            double limitWidth = x(switchover + downtimeLimit.toMillis(), xMax) - x0;
            double downWidth = Math.max(1.5, x(switchover + last.downtimeMs(), xMax) - x0);
            svg.append(String.format(Locale.ROOT, "<rect id=\"downtime-limit\" data-ms=\"%d\" x=\"%.1f\" y=\"%d\" "
                    + "width=\"%.1f\" height=\"%d\" fill=\"none\" stroke=\"#d62728\" stroke-dasharray=\"3 3\"/>%n",
                    downtimeLimit.toMillis(), x0, TOP, limitWidth, bottom - TOP));
            rect(svg, "switchover", x0, TOP, downWidth, bottom - TOP, "#d62728", "switchover: downtime "
                    + last.downtimeMs() + " ms, limit " + downtimeLimit.toMillis() + " ms");
            svg.append(String.format(Locale.ROOT, "<text x=\"%.1f\" y=\"%d\" font-size=\"10\" fill=\"#d62728\" "
                    + "text-anchor=\"end\">switchover: %d ms down (limit %d ms)</text>%n", x0 - 3, bottom + 28,
                    last.downtimeMs(), downtimeLimit.toMillis()));
        }
        for (int p = 0; p < panels.size(); p++) {
            panel(svg, panels.get(p), samples, TOP + p * (PANEL + GAP), xMax, p == panels.size() - 1);
        }
        svg.append("</svg>\n");
        return svg.toString();
    }

    private static void panel(StringBuilder svg, Panel panel, List<MigrationStats> samples, int top, double xMax,
                              boolean timeAxis) {
        double yMax = 0;
        for (Series s : panel.series()) {
            for (MigrationStats m : samples) {
                yMax = Math.max(yMax, s.value().applyAsDouble(m));
            }
        }
        yMax = panel.unit().equals("%") ? 100 : niceCeil(Math.max(yMax, 1e-9));
        int bottom = top + PANEL;
        svg.append(String.format(Locale.ROOT, "<g class=\"panel\" id=\"panel-%s\" data-y-max=\"%s\" data-unit=\"%s\">%n",
                panel.title(), number(yMax), panel.unit()));
        svg.append(String.format(Locale.ROOT, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
                + "stroke=\"#999999\"/>%n", LEFT, top, PLOT, PANEL));
        for (int i = 0; i <= 4; i++) {
            double v = yMax * i / 4;
            double y = bottom - PANEL * i / 4.0;
            svg.append(String.format(Locale.ROOT, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#f0f0f0\"/>"
                    + "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" font-size=\"10\">%s</text>%n",
                    LEFT + 1, y, LEFT + PLOT - 1, y, LEFT - 6, y + 3, number(v)));
        }
        svg.append(String.format(Locale.ROOT, "<text x=\"18\" y=\"%d\" transform=\"rotate(-90 18 %d)\" "
                + "text-anchor=\"middle\">%s (%s)</text>%n", top + PANEL / 2, top + PANEL / 2, panel.title(), panel.unit()));
        int legendX = LEFT + 8;
        for (Series s : panel.series()) {
            StringBuilder points = new StringBuilder();
            StringBuilder times = new StringBuilder();
            StringBuilder values = new StringBuilder();
            for (MigrationStats m : samples) {
                double v = s.value().applyAsDouble(m);
                if (!points.isEmpty()) {
                    points.append(' ');
                    times.append(',');
                    values.append(',');
                }
                points.append(String.format(Locale.ROOT, "%.1f,%.1f", x(m.totalTimeMs(), xMax),
                        bottom - PANEL * Math.min(v, yMax) / yMax));
                times.append(m.totalTimeMs());
                values.append(number(v));
            }
            svg.append(String.format(Locale.ROOT, "<polyline id=\"%s\" data-unit=\"%s\" data-times=\"%s\" "
                    + "data-values=\"%s\" points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\"%s/>%n",
                    s.id(), panel.unit(), times, values, points, s.color(),
                    s.dashed() ? " stroke-dasharray=\"6 4\"" : ""));
            svg.append(String.format(Locale.ROOT, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" "
                    + "stroke-width=\"2\"%s/><text x=\"%d\" y=\"%d\" font-size=\"11\">%s</text>%n", legendX, top + 12,
                    legendX + 18, top + 12, s.color(), s.dashed() ? " stroke-dasharray=\"6 4\"" : "", legendX + 22,
                    top + 16, escape(s.label())));
            legendX += 40 + 6 * s.label().length();
        }
        if (timeAxis) {
            double step = niceCeil(xMax / 8);
            for (double t = 0; t <= xMax * (1 + 1e-9); t += step) {
                svg.append(String.format(Locale.ROOT, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" "
                        + "font-size=\"10\">%s</text>%n", x(t, xMax), bottom + 14, seconds(t)));
            }
            svg.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">time (s)</text>%n",
                    LEFT + PLOT / 2, bottom + 42));
        }
        svg.append("</g>\n");
    }

    private static void rect(StringBuilder svg, String id, double x, int y, double w, int h, String fill, String title) {
        svg.append(String.format(Locale.ROOT, "<rect id=\"%s\" x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" "
                + "fill=\"%s\" fill-opacity=\"%s\"><title>%s</title></rect>%n", id, x, y, Math.max(0, w), h, fill,
                id.equals("setup") ? "1" : "0.35", escape(title)));
    }

    private static String summary(MigrationStats s, Duration limit) {
        String end = s.status() == MigrationStatus.COMPLETED
                ? String.format(Locale.ROOT, "downtime %d ms (limit %d ms)", s.downtimeMs(), limit.toMillis())
                : s.status().qemuName() + (s.error().isEmpty() ? "" : ": " + s.error());
        return String.format(Locale.ROOT, "%s, total %d ms, setup %d ms, %d passes, %d syncs, %.1f MiB sent, "
                        + "throttle up to %d%%", end, s.totalTimeMs(), s.setupTimeMs(), s.iterations(),
                s.dirtySyncCount(), s.transferred() / MIB, s.throttlePercent());
    }

    private static double x(double ms, double xMax) {
        return LEFT + PLOT * ms / xMax;
    }

    /** @return the smallest 1, 2 or 5 times a power of ten at least {@code v} */
    static double niceCeil(double v) {
        double p = Math.pow(10, Math.floor(Math.log10(v)));
        for (double m : new double[]{1, 2, 5, 10}) {
            if (m * p >= v * (1 - 1e-9)) {
                return m * p;
            }
        }
        return 10 * p;
    }

    private static String seconds(double ms) {
        return number(ms / 1000);
    }

    private static String number(double v) {
        if (v == Math.rint(v) && Math.abs(v) < 1e15) {
            return Long.toString((long) v);
        }
        return String.format(Locale.ROOT, "%.3f", v).replaceAll("0+$", "");
    }

    private static String escape(String s) {
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\"", "&quot;");
    }
}
