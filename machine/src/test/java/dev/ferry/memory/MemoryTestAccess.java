package dev.ferry.memory;

/** Test access to what memory-core keeps package-private. */
public final class MemoryTestAccess {

    private MemoryTestAccess() {
    }

    /** @return the subregion of {@code container} named {@code name} */
    public static MemoryRegion subregion(MemoryRegion container, String name) {
        return container.subregions().stream().filter(r -> r.name().equals(name)).findFirst()
                .orElseThrow(() -> new IllegalArgumentException("no subregion " + name + " in " + container));
    }
}
