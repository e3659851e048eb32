package dev.ferry.machine;

import dev.ferry.machine.workload.Workload;
import dev.ferry.memory.MemfdRamBlock;

/**
 * What a vCPU runs: its workload and its slice of RAM.
 *
 * @param workload  the machine's workload
 * @param ram       the RAM block, mapped at guest-physical address 0
 * @param firstPage the slice's first page
 * @param pageCount the slice's number of pages
 * @param vcpus     the number of vCPUs
 */
public record VcpuSetup(Workload workload, MemfdRamBlock ram, long firstPage, long pageCount, int vcpus) {
}
