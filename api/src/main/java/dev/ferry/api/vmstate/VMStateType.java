package dev.ferry.api.vmstate;

/**
 * The scalar types a device state field can have, with their width on the wire (big-endian,
 * as QEMU's vmstate writes them) and the type name QEMU's JSON description gives them, which
 * {@code scripts/analyze-migration.py} uses to decode the field.
 */
public enum VMStateType {
    /** One byte, 0 or 1 (QEMU's vmstate_info_bool). */
    BOOL("bool", 1, false),
    INT8("int8", 1, true),
    UINT8("uint8", 1, false),
    INT16("int16", 2, true),
    UINT16("uint16", 2, false),
    INT32("int32", 4, true),
    UINT32("uint32", 4, false),
    INT64("int64", 8, true),
    UINT64("uint64", 8, false);

    private final String qemuName;
    private final int size;
    private final boolean signed;

    VMStateType(String qemuName, int size, boolean signed) {
        this.qemuName = qemuName;
        this.size = size;
        this.signed = signed;
    }

    /** @return the type's name in QEMU's JSON description, e.g. {@code "uint32"} */
    public String qemuName() {
        return qemuName;
    }

    /**
     * @return the name QEMU gives the checked ("equal") variant; QEMU's migration/vmstate-types.c
     *         names the 64-bit one "int64 equal", which analyze-migration.py knows
     */
    public String qemuEqualName() {
        return this == UINT64 ? "int64 equal" : qemuName + " equal";
    }

    /** @return bytes on the wire */
    public int size() {
        return size;
    }

    /** @return whether values are signed */
    public boolean signed() {
        return signed;
    }

    /** @return whether {@code value} fits this type (for UINT64 every long does: it is read unsigned) */
    public boolean fits(long value) {
        return switch (this) {
            case BOOL -> value == 0 || value == 1;
            case INT8 -> value == (byte) value;
            case UINT8 -> (value & ~0xffL) == 0;
            case INT16 -> value == (short) value;
            case UINT16 -> (value & ~0xffffL) == 0;
            case INT32 -> value == (int) value;
            case UINT32 -> (value & ~0xffff_ffffL) == 0;
            case INT64, UINT64 -> true;
        };
    }

    /** @return whether the type can give an array or buffer its length */
    public boolean isCount() {
        return this == UINT8 || this == UINT16 || this == UINT32;
    }
}
