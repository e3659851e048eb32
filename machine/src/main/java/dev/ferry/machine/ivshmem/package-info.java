/**
 * Device {@code ivshmem}: a PCI device whose BAR 2 is a block of guest-visible RAM (QEMU's
 * ivshmem-plain), the device whose state load changes the memory topology.
 */
package dev.ferry.machine.ivshmem;
