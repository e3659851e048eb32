package dev.ferry.machine;

import dev.ferry.api.Device;
import dev.ferry.api.vmstate.VMState;
import dev.ferry.api.vmstate.VMStateDescription;
import dev.ferry.api.vmstate.VMStateField.Count;

/**
 * A vCPU as the migration sees it: QEMU's "cpu" section, one instance per vCPU. The state is the
 * accelerator's own (registers for kvm, the workload cursor for soft), carried as one buffer of
 * the accelerator's fixed size, and set into the vCPU in post-load, where a state that is not
 * the accelerator's own is refused.
 */
final class CpuDevice implements Device {

    private final int index;
    private final VcpuLoop loop;
    private final VMStateDescription<CpuDevice> description;
    private byte[] loaded;

    CpuDevice(int index, VcpuLoop loop) {
        this.index = index;
        this.loop = loop;
        this.description = VMStateDescription.<CpuDevice>builder("cpu")
                .buffer("state", Count.of(loop.stateBytes()), c -> c.loop.saveState(), (c, v) -> c.loaded = v)
                .postLoad((c, version) -> c.loop.loadState(c.loaded))
                .build();
    }

    @Override
    public String id() {
        return "cpu" + index;
    }

    @Override
    public VMState<?> vmstate() {
        return VMState.of(description, this);
    }
}
