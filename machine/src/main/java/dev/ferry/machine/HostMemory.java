package dev.ferry.machine;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.OptionalLong;

/**
 * How much memory this host can still give guests: the kernel's estimate of what can be
 * allocated without swapping ({@code MemAvailable} in {@code /proc/meminfo}), capped by this
 * process's memory cgroup where it has a limit.
 *
 * <p>Guest RAM is a memfd: shared memory that the kernel cannot reclaim without swap. A guest
 * bigger than this is faulted in (preallocated, or written by the guest and the incoming
 * migration) until the OOM killer ends the process, so it is refused before any is allocated.
 *
 * @param available bytes that can be allocated now
 * @param source    where the figure comes from, for messages
 */
public record HostMemory(long available, String source) {

    /** Kept free for the JVM, the trackers' bitmaps and the kernel's page tables. */
    public static final long HEADROOM = 512L << 20;

    private static final Path MEMINFO = Path.of("/proc/meminfo");
    private static final Path CGROUP = Path.of("/sys/fs/cgroup");

    /** @return the host's figure now (reads /proc and the cgroup files; no allocation) */
    public static HostMemory probe() {
        try {
            return of(Files.readAllLines(MEMINFO), cgroupRemaining());
        } catch (IOException | RuntimeException e) {
            // Not Linux as we know it: nothing to judge by, so nothing is refused.
            return new HostMemory(Long.MAX_VALUE, "unknown (" + e.getMessage() + ")");
        }
    }

    /**
     * @param meminfo         the lines of /proc/meminfo
     * @param cgroupRemaining what the memory cgroup still allows, if it has a limit
     */
    static HostMemory of(List<String> meminfo, OptionalLong cgroupRemaining) {
        long available = meminfo.stream().filter(l -> l.startsWith("MemAvailable:"))
                .mapToLong(l -> Long.parseLong(l.replaceAll("\\D", "")) * 1024)
                .findFirst().orElseThrow(() -> new IllegalStateException("no MemAvailable in /proc/meminfo"));
        if (cgroupRemaining.isPresent() && cgroupRemaining.getAsLong() < available) {
            return new HostMemory(cgroupRemaining.getAsLong(), "left under this process's memory cgroup limit");
        }
        return new HostMemory(available, "MemAvailable");
    }

    /**
     * Judges whether {@code needBytes} of guest RAM fit, with {@link #HEADROOM} to spare.
     *
     * @return why not, as the end of a sentence ("..., but the host has ..."); empty if it fits
     */
    public Optional<String> shortfall(long needBytes) {
        if (available == Long.MAX_VALUE || needBytes <= available - HEADROOM) {
            return Optional.empty();
        }
        return Optional.of(String.format("the host has %s available (%s), and Ferry keeps %s of that free",
                gib(available), source, gib(HEADROOM)));
    }

    /**
     * Throws if one guest of {@code guestBytes} does not fit now.
     *
     * @throws IllegalArgumentException saying why, in one line
     */
    public static void require(long guestBytes) {
        probe().shortfall(guestBytes).ifPresent(why -> {
            throw new IllegalArgumentException("a guest of " + gib(guestBytes) + " does not fit: " + why);
        });
    }

    /** @return bytes in GiB with one decimal, as the messages give them */
    public static String gib(long bytes) {
        return String.format("%.1f GiB", bytes / (double) (1L << 30));
    }

    /**
     * cgroup v2 ({@code memory.max} − {@code memory.current}) or v1 (limit − usage), where limited;
     * the usage counts page cache, whose inactive part the kernel reclaims before it kills.
     */
    private static OptionalLong cgroupRemaining() throws IOException {
        String v2 = Files.readAllLines(Path.of("/proc/self/cgroup")).stream().filter(l -> l.startsWith("0::"))
                .map(l -> l.substring(3)).findFirst().orElse(null);
        if (v2 != null) {
            Path dir = CGROUP.resolve(v2.startsWith("/") ? v2.substring(1) : v2);
            OptionalLong r = remaining(dir.resolve("memory.max"), dir.resolve("memory.current"),
                    dir.resolve("memory.stat"), "inactive_file ");
            if (r.isPresent()) {
                return r;
            }
        }
        Path v1 = CGROUP.resolve("memory");
        return remaining(v1.resolve("memory.limit_in_bytes"), v1.resolve("memory.usage_in_bytes"),
                v1.resolve("memory.stat"), "total_inactive_file ");
    }

    private static OptionalLong remaining(Path limit, Path usage, Path stat, String reclaimable) throws IOException {
        if (!Files.isReadable(limit) || !Files.isReadable(usage)) {
            return OptionalLong.empty();
        }
        String max = Files.readString(limit).trim();
        // "max" (v2) or a page-rounded Long.MAX_VALUE (v1) mean no limit.
        if (max.equals("max") || Long.parseLong(max) >= Long.MAX_VALUE / 2) {
            return OptionalLong.empty();
        }
        long cache = !Files.isReadable(stat) ? 0 : Files.readAllLines(stat).stream()
                .filter(l -> l.startsWith(reclaimable)).mapToLong(l -> Long.parseLong(l.substring(reclaimable.length()).trim()))
                .findFirst().orElse(0);
        long used = Long.parseLong(Files.readString(usage).trim()) - cache;
        return OptionalLong.of(Math.max(0, Long.parseLong(max) - used));
    }
}
