package dev.ferry.migration;

import java.nio.charset.StandardCharsets;
import java.util.List;

/**
 * The JSON description QEMU appends after the end of a stream (QEMU_VM_VMDESCRIPTION), which
 * scripts/analyze-migration.py needs to parse the device sections: the page size, and for each
 * device section its name, instance, description name, version, fields and subsections.
 */
final class VmDescription {

    private VmDescription() {
    }

    /**
     * @param devices each device section's entry, as {@link dev.ferry.vmstate.VMStateSaver} describes it
     * @return the JSON, as UTF-8 without NUL bytes
     */
    static byte[] json(List<String> devices) {
        StringBuilder sb = new StringBuilder("{\"page_size\": 4096, \"devices\": [");
        sb.append(String.join(", ", devices));
        sb.append("]}");
        // analyze-migration.py finds the JSON as the first '{' after the last NUL byte; a length
        // whose bytes hold '{' (0x7b) would mislead it, so pad such a length away.
        byte[] json = sb.toString().getBytes(StandardCharsets.UTF_8);
        while (lengthHasBrace(json.length)) {
            json = java.util.Arrays.copyOf(json, json.length + 1);
            json[json.length - 1] = ' ';
        }
        return json;
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
