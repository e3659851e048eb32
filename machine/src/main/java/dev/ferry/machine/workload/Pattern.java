package dev.ferry.machine.workload;

import java.util.Locale;

/** How a workload picks the next page to write. */
public enum Pattern {
    /**
     * Every page of the vCPU's slice in address order, wrapping around; each visit increments
     * the page's counter byte (offset 0). Self-checking, like QEMU's migration-test guest: at any
     * instant the slice holds v+1 on a prefix and v on the rest (mod 256).
     */
    SEQUENTIAL,
    /** Uniformly random pages of the slice (xorshift64). */
    RANDOM,
    /** Random pages, most of them from a small hot part of the slice. */
    HOTCOLD,
    /** Writes nothing: an idle guest. */
    IDLE;

    /** @return the pattern named {@code name}, case-insensitively */
    public static Pattern parse(String name) {
        for (Pattern p : values()) {
            if (p.name().equalsIgnoreCase(name.trim())) {
                return p;
            }
        }
        throw new IllegalArgumentException("unknown workload '" + name + "': use sequential, random, hotcold or idle");
    }

    @Override
    public String toString() {
        return name().toLowerCase(Locale.ROOT);
    }
}
