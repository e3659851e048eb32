/**
 * Real KVM through {@code java.lang.foreign}, named as in the kernel and QEMU.
 *
 * <ul>
 *   <li>{@link dev.ferry.kvm.Kvm}: {@code /dev/kvm}, capabilities, supported CPUID, and
 *       {@link dev.ferry.kvm.Kvm#probe()} for whether KVM is usable here.</li>
 *   <li>{@link dev.ferry.kvm.KvmVm}: memory slots, dirty bitmaps (KVM_GET_DIRTY_LOG, manual protect
 *       with KVM_CLEAR_DIRTY_LOG), the dirty ring (enable, KVM_RESET_DIRTY_RINGS), vCPU creation.</li>
 *   <li>{@link dev.ferry.kvm.KvmVcpu}: KVM_RUN and its exits, kicks (immediate_exit plus SIGPIPE),
 *       registers as {@link dev.ferry.kvm.KvmRegs}/{@link dev.ferry.kvm.KvmSregs} records, CPUID, and
 *       the vCPU's {@link dev.ferry.kvm.KvmDirtyRing}.</li>
 *   <li>{@link dev.ferry.kvm.GuestCode}: the x86-64 long-mode guest that runs a workload and exits to
 *       a pacing port.</li>
 *   <li>{@link dev.ferry.kvm.KvmIoctls} and {@link dev.ferry.kvm.KvmStructs}: the uapi numbers and
 *       struct layouts, checked against {@code <linux/kvm.h>} by the tests.</li>
 * </ul>
 *
 * System calls go through {@link dev.ferry.memory.linux.Linux}; failures are
 * {@link dev.ferry.memory.linux.LinuxException}s naming the ioctl and errno.
 */
package dev.ferry.kvm;
