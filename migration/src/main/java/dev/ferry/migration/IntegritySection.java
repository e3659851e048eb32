package dev.ferry.migration;

import dev.ferry.api.vmstate.VMState;
import dev.ferry.api.vmstate.VMStateDescription;
import dev.ferry.api.vmstate.VMStateField.Count;
import dev.ferry.api.vmstate.VMStateType;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * A saved guest's proof of integrity: the source's RAM digest of every block
 * ({@link dev.ferry.migration.ram.RamDigest}), taken with the guest stopped, carried in a stream
 * that has no return path (a file) as one more FULL section after the devices'. Over a socket the
 * destination sends its digests back instead, and the source confirms them.
 *
 * <p>It is an ordinary vmstate section, {@value #IDSTR} instance 0, described in the stream's
 * JSON like any device, so QEMU's {@code scripts/analyze-migration.py} lists it: {@code blocks}
 * (uint32), {@code digests} (that many uint32, in the order of {@code names}), {@code names-size}
 * (uint32) and {@code names} (the block names, NUL-separated). A loader that does not know it
 * rejects the stream as it would an unknown device, which is right: the file says it must be
 * checked.
 */
final class IntegritySection {

    /** The section's idstr. */
    static final String IDSTR = "ferry-integrity";
    /** Blocks a section may name: far more than a machine has, small enough to read safely. */
    private static final int MAX_BLOCKS = 1024;
    private static final int MAX_NAMES_BYTES = 64 << 10;

    private static final VMStateDescription<IntegritySection> VMSD = VMStateDescription.<IntegritySection>builder(IDSTR)
            // The counts follow from the arrays: loading them sets nothing.
            .uint32("blocks", s -> s.digests.length, (s, v) -> { })
            .array("digests", VMStateType.UINT32, Count.from("blocks", MAX_BLOCKS), s -> s.digests,
                    (s, v) -> s.digests = v)
            .uint32("names-size", s -> s.names.length, (s, v) -> { })
            .buffer("names", Count.from("names-size", MAX_NAMES_BYTES), s -> s.names, (s, v) -> s.names = v)
            .build();

    private long[] digests = new long[0];
    private byte[] names = new byte[0];

    /** @return an empty section to load into */
    static IntegritySection empty() {
        return new IntegritySection();
    }

    /** @param digests the source's digest of each block, in the RAM section's block order */
    static IntegritySection of(Map<String, Integer> digests) {
        IntegritySection s = new IntegritySection();
        s.digests = digests.values().stream().mapToLong(Integer::toUnsignedLong).toArray();
        s.names = String.join("\0", digests.keySet()).getBytes(StandardCharsets.UTF_8);
        return s;
    }

    /** @return the section's state, to save or to load */
    VMState<IntegritySection> vmstate() {
        return VMState.of(VMSD, this);
    }

    /** @return the version of the section */
    static int version() {
        return VMSD.version();
    }

    /** @return the digests by block name, as saved */
    Map<String, Integer> digests() {
        List<String> blockNames = names.length == 0 ? List.of()
                : Arrays.asList(new String(names, StandardCharsets.UTF_8).split("\0", -1));
        Map<String, Integer> out = new LinkedHashMap<>();
        for (int i = 0; i < Math.min(blockNames.size(), digests.length); i++) {
            out.put(blockNames.get(i), (int) digests[i]);
        }
        return out;
    }

    /**
     * Compares what was loaded with what the source saved.
     *
     * @param loaded the destination's digest of each block, after the whole stream was loaded
     * @return what differs, naming the block; empty if everything matches
     */
    Optional<String> check(Map<String, Integer> loaded) {
        Map<String, Integer> saved = digests();
        if (saved.size() != digests.length || !saved.keySet().equals(loaded.keySet())) {
            return Optional.of("it names RAM blocks " + saved.keySet() + " (" + digests.length + " digests), the "
                    + "stream loaded " + loaded.keySet());
        }
        for (var e : saved.entrySet()) {
            int got = loaded.get(e.getKey());
            if (got != e.getValue()) {
                return Optional.of(String.format("RAM block %s does not match the source's digest (saved %08x, "
                        + "loaded %08x): the stream was damaged after it was written", e.getKey(), e.getValue(), got));
            }
        }
        return Optional.empty();
    }
}
