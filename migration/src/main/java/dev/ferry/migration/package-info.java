/**
 * Precopy live migration, and the protocol between its two ends, in one place.
 *
 * <h2>The stream (source to destination)</h2>
 * QEMU's migration stream format (migration/savevm.c, migration/ram.c), all integers
 * big-endian, so QEMU's scripts/analyze-migration.py reads a stream saved to a file:
 * <ol>
 * <li>{@code be32 0x5145564d} ("QEVM"), {@code be32 3}.</li>
 * <li>Configuration: {@code 0x07}, {@code be32 len}, the machine's name — for Ferry a
 *     {@link dev.ferry.migration.MachineDescription} ({@code ferry:accel=soft,mem=...}), from
 *     which the destination builds the same machine.</li>
 * <li>The "ram" section (id 0, version 4): START ({@code 0x01}, id, idstr, instance, version)
 *     with the block list ({@code be64 total|MEM_SIZE}, then per block a one-byte-length name
 *     and {@code be64} size) and {@code EOS}; one PART ({@code 0x02}, id) per send burst; END
 *     ({@code 0x03}, id) with the pages left at switchover. A page is {@code be64 offset|flags}
 *     (PAGE, or ZERO plus one fill byte; CONTINUE when it is in the same block as the previous
 *     page, else the block name follows), then 4096 bytes for PAGE. Every part ends with
 *     {@code EOS}, every section with a footer ({@code 0x7e}, id).</li>
 * <li>One FULL section ({@code 0x04}) "cpu" per vCPU, version 1: the vCPU's state, its size
 *     fixed by the accelerator.</li>
 * <li>{@code 0x00} (EOF), then {@code 0x06}, {@code be32 len} and the JSON description
 *     (page size; each device section's fields).</li>
 * <li>Over a transport with a return path, after all of that, one byte: {@code 'G'} (GO) or
 *     {@code 'A'} (ABORT).</li>
 * </ol>
 *
 * <h2>The return path (destination to source)</h2>
 * Framed as QEMU's: {@code be16 type}, {@code be16 length}, payload.
 * <ul>
 * <li>READY ({@code 0x7f03}): the configuration was accepted and the machine exists, its RAM
 *     allocated: faulted in already where the destination knew the guest's size beforehand,
 *     otherwise being faulted in behind the loader. The source sends no page before it, so
 *     building the destination counts as setup, never as downtime.</li>
 * <li>DIGESTS ({@code 0x7f01}): per RAM block a one-byte-length name and a {@code be32} digest
 *     (see {@link dev.ferry.migration.ram.RamDigest}), sent as soon as the guest runs on the
 *     destination; its arrival ends the downtime the source reports.</li>
 * <li>ERROR ({@code 0x7f02}): the stream was rejected; UTF-8 text naming the byte offset.</li>
 * <li>SHUT ({@code 1}, QEMU's MIG_RP_MSG_SHUT): {@code be32 0} when the destination keeps the
 *     guest (after GO), else non-zero.</li>
 * </ul>
 *
 * <h2>Who runs the guest</h2>
 * The source stops its vCPUs at switchover and never runs them again once it has sent GO. It
 * sends GO only if its own digest of its stopped RAM equals the destination's; on ABORT the
 * destination stops and discards its copy (then says SHUT) and the source guest runs on. On any
 * failure before GO — a lost connection, an ERROR, cancel, timeout — the source guest runs on
 * with dirty logging stopped. A saved file has no return path: the source stays stopped, and
 * {@code ferry incoming file:...} checks what it can (a sequential guest's image) on its own.
 */
package dev.ferry.migration;
