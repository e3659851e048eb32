package dev.ferry.kvm;

import dev.ferry.api.Options;

import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * The kvm accelerator's properties, parsed and checked (QEMU's {@code -accel kvm,...} options).
 *
 * <ul>
 *   <li>{@value #DIRTY_RING_SIZE}: entries per vCPU dirty ring, as QEMU's {@code dirty-ring-size}:
 *       a power of two from {@value #MIN_DIRTY_RING_ENTRIES} up to what the kernel allows
 *       (KVM_CAP_DIRTY_LOG_RING's byte limit / 16 bytes per struct kvm_dirty_gfn). When given, the
 *       VM uses dirty rings instead of dirty bitmaps, enabled before any vCPU exists.</li>
 *   <li>{@value #MANUAL_DIRTY_LOG_PROTECT}: {@code on}, {@code off} or {@code auto} (the default:
 *       on where the kernel offers KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 and no ring is used, as
 *       QEMU's kvm_init decides). Must be settled before the first slot logs dirty pages.</li>
 * </ul>
 *
 * @param dirtyRingEntries entries per vCPU ring, 0 for dirty bitmaps
 * @param manualProtect    what to do about manual dirty-log protection
 */
public record KvmAcceleratorProperties(int dirtyRingEntries, ManualProtect manualProtect) {

    /** Property name: dirty ring entries per vCPU. */
    public static final String DIRTY_RING_SIZE = "dirty-ring-size";
    /** Property name: manual dirty-log protection. */
    public static final String MANUAL_DIRTY_LOG_PROTECT = "manual-dirty-log-protect";
    /** Every property the kvm accelerator understands. */
    public static final Set<String> NAMES = Set.of(DIRTY_RING_SIZE, MANUAL_DIRTY_LOG_PROTECT);
    /** The smallest ring QEMU accepts; smaller rings fill before a reaper can keep up. */
    public static final int MIN_DIRTY_RING_ENTRIES = 1024;

    /** Whether to enable KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2. */
    public enum ManualProtect {
        /** Required: fail if the kernel lacks it. */
        ON,
        /** Never: KVM_GET_DIRTY_LOG clears and re-protects by itself. */
        OFF,
        /** Where offered and no dirty ring is used. */
        AUTO
    }

    public KvmAcceleratorProperties {
        if (dirtyRingEntries != 0 && (Integer.bitCount(dirtyRingEntries) != 1 || dirtyRingEntries < MIN_DIRTY_RING_ENTRIES)) {
            throw new IllegalArgumentException(DIRTY_RING_SIZE + " must be a power of two of at least "
                    + MIN_DIRTY_RING_ENTRIES + " entries, got " + dirtyRingEntries);
        }
        if (manualProtect == null) {
            throw new IllegalArgumentException(MANUAL_DIRTY_LOG_PROTECT + " is required");
        }
        if (dirtyRingEntries != 0 && manualProtect == ManualProtect.ON) {
            throw new IllegalArgumentException(MANUAL_DIRTY_LOG_PROTECT + "=on cannot be combined with "
                    + DIRTY_RING_SIZE + ": with a dirty ring KVM keeps no dirty bitmap to protect manually");
        }
    }

    /** @return the defaults: dirty bitmaps, manual protect where offered */
    public static KvmAcceleratorProperties defaults() {
        return new KvmAcceleratorProperties(0, ManualProtect.AUTO);
    }

    /**
     * Parses accelerator properties. Checks everything that does not depend on the host; the ring's
     * upper bound is checked by {@link #checkDirtyRing(int)} once the VM exists.
     *
     * @throws IllegalArgumentException with a one-line message naming the property
     */
    public static KvmAcceleratorProperties parse(Map<String, String> properties) {
        Options.of(properties).requireOnly(NAMES, "the kvm accelerator",
                "its properties are " + String.join(", ", new TreeSet<>(NAMES)));
        int entries = 0;
        String ring = properties.get(DIRTY_RING_SIZE);
        if (ring != null) {
            long value;
            try {
                value = Long.parseLong(ring.trim());
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException(DIRTY_RING_SIZE + " must be a number of entries (a power of two, at least "
                        + MIN_DIRTY_RING_ENTRIES + "), got '" + ring + "'");
            }
            if (value < MIN_DIRTY_RING_ENTRIES || value > 1 << 30 || Long.bitCount(value) != 1) {
                throw new IllegalArgumentException(DIRTY_RING_SIZE + " must be a power of two of at least "
                        + MIN_DIRTY_RING_ENTRIES + " entries, got " + ring.trim());
            }
            entries = (int) value;
        }
        ManualProtect manual = ManualProtect.AUTO;
        String mp = properties.get(MANUAL_DIRTY_LOG_PROTECT);
        if (mp != null) {
            manual = switch (mp.trim().toLowerCase(Locale.ROOT)) {
                case "on", "true", "yes", "1" -> ManualProtect.ON;
                case "off", "false", "no", "0" -> ManualProtect.OFF;
                case "auto" -> ManualProtect.AUTO;
                default -> throw new IllegalArgumentException(MANUAL_DIRTY_LOG_PROTECT
                        + " must be on, off or auto, got '" + mp + "'");
            };
        }
        return new KvmAcceleratorProperties(entries, manual);
    }

    /** @return the ring size in bytes per vCPU, 0 without a ring */
    public int dirtyRingBytes() {
        return Math.multiplyExact(dirtyRingEntries, (int) KvmStructs.KVM_DIRTY_GFN.byteSize());
    }

    /**
     * Checks the ring size against what the kernel allows.
     *
     * @param maxRingBytes KVM_CAP_DIRTY_LOG_RING(_ACQ_REL): the largest ring in bytes, 0 if none
     * @throws IllegalArgumentException stating the valid range
     */
    public void checkDirtyRing(int maxRingBytes) {
        if (dirtyRingEntries == 0) {
            return;
        }
        long gfn = KvmStructs.KVM_DIRTY_GFN.byteSize();
        if (maxRingBytes <= 0) {
            throw new IllegalArgumentException(DIRTY_RING_SIZE + "=" + dirtyRingEntries
                    + ": this kernel has no KVM dirty ring (KVM_CAP_DIRTY_LOG_RING, Linux 5.11+ on x86)");
        }
        long maxEntries = maxRingBytes / gfn;
        if (dirtyRingEntries > maxEntries) {
            throw new IllegalArgumentException(DIRTY_RING_SIZE + " must be a power of two from "
                    + MIN_DIRTY_RING_ENTRIES + " to " + maxEntries + " entries on this host (KVM allows "
                    + maxRingBytes + " bytes per vCPU, " + gfn + " bytes per entry), got " + dirtyRingEntries);
        }
    }

    /**
     * Decides whether to enable manual protection.
     *
     * @param offered KVM_CHECK_EXTENSION(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) of the VM
     * @throws IllegalArgumentException if it is required and the kernel lacks it
     */
    public boolean wantsManualProtect(int offered) {
        boolean available = (offered & KvmIoctls.KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) != 0;
        return switch (manualProtect) {
            case ON -> {
                if (!available) {
                    throw new IllegalArgumentException(MANUAL_DIRTY_LOG_PROTECT + "=on, but this kernel lacks "
                            + "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 (Linux 5.3+); use off or auto");
                }
                yield true;
            }
            case OFF -> false;
            case AUTO -> available && dirtyRingEntries == 0;
        };
    }
}
