/**
 * The {@code kvm-dirtyring} tracker: KVM's per-vCPU dirty rings (seed 004, QEMU's "KVM: Dirty
 * ring support"), harvested by a reaper thread, on ring-full exits and on every global sync.
 *
 * <ul>
 *   <li>{@link dev.ferry.kvm.dirtyring.KvmDirtyRingProvider}: probe, the {@code dirty-ring-size}
 *       option, what the kvm accelerator must enable before the vCPUs exist.</li>
 *   <li>{@link dev.ferry.kvm.dirtyring.KvmDirtyRingTracker}: the memory listener, the reaper
 *       thread and the hooks the accelerator calls (slot removal, ring-full and pacing exits).</li>
 *   <li>{@link dev.ferry.kvm.dirtyring.DirtyRings}: one reap of every ring — harvest, mark, reset,
 *       and the checks that turn a ring that lost entries into an error rather than silence.</li>
 *   <li>{@link dev.ferry.kvm.dirtyring.SlotPageMarker}: (slot, offset) entries to RAM block pages,
 *       a 64-page word at a time.</li>
 *   <li>{@link dev.ferry.kvm.dirtyring.DirtyRingIoctls}: the kernel calls, a seam so the protocol
 *       is tested against a simulated kernel where there is no {@code /dev/kvm}.</li>
 * </ul>
 */
package dev.ferry.kvm.dirtyring;
