package dev.ferry.migration.stream;

/**
 * Constants of QEMU's migration stream, so that QEMU's scripts/analyze-migration.py reads a
 * Ferry stream saved to a file. Values from QEMU's migration/savevm.c (QEMU_VM_*) and
 * migration/ram.c (RAM_SAVE_FLAG_*); all integers in the stream are big-endian.
 */
public final class QemuFormat {

    /** "QEVM". */
    public static final int FILE_MAGIC = 0x5145564d;
    /** The only stream version QEMU has written since 2.x. */
    public static final int FILE_VERSION = 3;

    public static final int EOF = 0x00;
    public static final int SECTION_START = 0x01;
    public static final int SECTION_PART = 0x02;
    public static final int SECTION_END = 0x03;
    public static final int SECTION_FULL = 0x04;
    public static final int SUBSECTION = 0x05;
    public static final int VMDESCRIPTION = 0x06;
    public static final int CONFIGURATION = 0x07;
    public static final int COMMAND = 0x08;
    public static final int SECTION_FOOTER = 0x7e;

    /** RAM page flags live in the low bits of the page offset. */
    public static final int RAM_FLAG_ZERO = 0x02;
    public static final int RAM_FLAG_MEM_SIZE = 0x04;
    public static final int RAM_FLAG_PAGE = 0x08;
    public static final int RAM_FLAG_EOS = 0x10;
    public static final int RAM_FLAG_CONTINUE = 0x20;

    /** The RAM section's id string and version (ram.c registers "ram" version 4). */
    public static final String RAM_SECTION = "ram";
    public static final int RAM_VERSION = 4;

    /** QEMU caps the JSON description at the end of the stream; so do we. */
    public static final int MAX_VMDESCRIPTION = 10 << 20;

    private QemuFormat() {
    }
}
