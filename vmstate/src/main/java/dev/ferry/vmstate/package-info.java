/**
 * Device state in QEMU's vmstate wire format (migration/vmstate.c): {@link VMStateSaver} writes
 * a {@link dev.ferry.api.vmstate.VMStateDescription}'s fields and needed subsections and the
 * matching JSON description; {@link VMStateLoader} reads them back, checking versions, lengths,
 * equal fields and subsections before it sets anything.
 *
 * <p>Wire format, all integers big-endian: the fields in order, each at its type's width
 * (bool one byte); arrays and buffers as their elements, with no length (a variable length is
 * an earlier field); nested structs inline, followed by their own subsections; then each needed
 * subsection as {@code 0x05}, a one-byte name length, the name, a 32-bit version, and its
 * fields and subsections.
 */
package dev.ferry.vmstate;
