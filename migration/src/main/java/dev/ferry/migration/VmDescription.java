package dev.ferry.migration;

import java.nio.charset.StandardCharsets;

/**
 * The JSON description QEMU appends after the end of a stream (QEMU_VM_VMDESCRIPTION), which
 * scripts/analyze-migration.py needs to parse the device sections: the page size, and for each
 * device section its name, instance and fields.
 */
final class VmDescription {

    private VmDescription() {
    }

    /**
     * @param vcpus          number of "cpu" sections
     * @param vcpuStateBytes size of each one's state buffer
     * @return the JSON, as UTF-8 without NUL bytes
     */
    static byte[] json(int vcpus, int vcpuStateBytes) {
        StringBuilder sb = new StringBuilder("{\"page_size\": 4096, \"devices\": [");
        for (int i = 0; i < vcpus; i++) {
            if (i > 0) {
                sb.append(", ");
            }
            sb.append("{\"name\": \"cpu\", \"instance_id\": ").append(i)
                    .append(", \"vmsd_name\": \"cpu\", \"version\": 1, \"fields\": [{\"name\": \"state\", ")
                    .append("\"type\": \"buffer\", \"size\": ").append(vcpuStateBytes).append("}]}");
        }
        sb.append("]}");
        // analyze-migration.py finds the JSON as the first '{' after the last NUL byte; a length
        // whose bytes hold '{' (0x7b) would mislead it, so pad such a length away.
        while (lengthHasBrace(sb.length())) {
            sb.append(' ');
        }
        return sb.toString().getBytes(StandardCharsets.UTF_8);
    }

    private static boolean lengthHasBrace(int len) {
        for (int shift = 0; shift < 32; shift += 8) {
            if (((len >>> shift) & 0xff) == '{') {
                return true;
            }
        }
        return false;
    }
}
