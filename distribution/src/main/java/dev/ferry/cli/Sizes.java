package dev.ferry.cli;

import java.util.Locale;

/** Parses and prints byte sizes the way QEMU's command line does: 512M, 1G, 4GiB, 4096. */
final class Sizes {

    private Sizes() {
    }

    /**
     * @return the size in bytes
     * @throws IllegalArgumentException with a one-line message if {@code text} is not a size
     */
    static long parse(String text) {
        String s = text.trim().toUpperCase(Locale.ROOT);
        if (s.endsWith("IB")) {
            s = s.substring(0, s.length() - 2);
        } else if (s.endsWith("B") && s.length() > 1 && !Character.isDigit(s.charAt(s.length() - 2))) {
            s = s.substring(0, s.length() - 1);
        }
        int shift = 0;
        if (!s.isEmpty()) {
            switch (s.charAt(s.length() - 1)) {
                case 'K' -> shift = 10;
                case 'M' -> shift = 20;
                case 'G' -> shift = 30;
                case 'T' -> shift = 40;
                default -> shift = -1;
            }
            if (shift >= 0) {
                s = s.substring(0, s.length() - 1);
            } else {
                shift = 0;
            }
        }
        try {
            long n = Long.parseLong(s.trim());
            if (n < 0 || (shift > 0 && n > (Long.MAX_VALUE >> shift))) {
                throw new NumberFormatException();
            }
            return n << shift;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("'" + text + "' is not a size; use e.g. 512M, 1G or 4GiB");
        }
    }

    /** @return e.g. "1 GiB", "512 MiB", "12 KiB" */
    static String format(long bytes) {
        String[] units = {"B", "KiB", "MiB", "GiB", "TiB"};
        double v = bytes;
        int u = 0;
        while (v >= 1024 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        return v == Math.rint(v) ? String.format("%d %s", (long) v, units[u]) : String.format("%.1f %s", v, units[u]);
    }
}
