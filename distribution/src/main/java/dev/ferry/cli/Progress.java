package dev.ferry.cli;

import java.io.PrintWriter;

/**
 * A one-line progress bar on the terminal, redrawn in place. Silent when standard error is not
 * a terminal, so logs and pipes get only the final report.
 */
final class Progress implements AutoCloseable {

    private static final int WIDTH = 30;

    private final PrintWriter err;
    private final boolean enabled;
    private boolean drawn;

    Progress(PrintWriter err, boolean quiet) {
        this.err = err;
        this.enabled = !quiet && System.console() != null && System.console().isTerminal();
    }

    /** Redraws the bar at {@code fraction} (0 to 1) with a status after it. */
    void update(double fraction, String status) {
        if (!enabled) {
            return;
        }
        int filled = (int) Math.round(Math.max(0, Math.min(1, fraction)) * WIDTH);
        err.print("\r[" + "#".repeat(filled) + " ".repeat(WIDTH - filled) + "] "
                + String.format("%3d%%  %s", Math.round(fraction * 100), status) + "\u001b[K");
        err.flush();
        drawn = true;
    }

    @Override
    public void close() {
        if (drawn) {
            err.print("\r\u001b[K");
            err.flush();
        }
    }
}
