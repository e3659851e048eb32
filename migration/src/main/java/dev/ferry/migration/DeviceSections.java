package dev.ferry.migration;

import dev.ferry.api.Device;
import dev.ferry.machine.Machine;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * How a machine's vCPUs and devices map to non-iterable sections, on both sides alike: each is
 * named after its state description (QEMU's idstr) and numbered per name in the order the
 * machine lists them (QEMU's instance_id), so the destination finds the source's sections.
 *
 * @param device   the vCPU or device
 * @param idstr    the section's name
 * @param instance its instance among sections of that name
 */
record DeviceSections(Device device, String idstr, int instance) {

    /** @return the machine's sections, in stream order */
    static List<DeviceSections> of(Machine machine) {
        List<DeviceSections> out = new ArrayList<>();
        Map<String, Integer> instances = new HashMap<>();
        for (Device d : machine.migratableDevices()) {
            String idstr = d.vmstate().description().name();
            out.add(new DeviceSections(d, idstr, instances.merge(idstr, 1, Integer::sum) - 1));
        }
        return out;
    }

    /** @return what the section holds, for messages: "vCPU 1" or "device vhost-net0" */
    String what() {
        return idstr.equals("cpu") ? "vCPU " + instance : "device " + device.id();
    }
}
