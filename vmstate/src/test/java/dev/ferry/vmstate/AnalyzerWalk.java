package dev.ferry.vmstate;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.DataInput;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Reads a device section with nothing but its JSON description, by the rules QEMU's
 * scripts/analyze-migration.py follows (VMSDFieldStruct): a field with "array_len" stands for
 * that many fields; integer types are read at their "size", signed or not; "struct" recurses
 * into the field's "struct"; any other type is "size" raw bytes; after the fields, each listed
 * subsection must follow as 0x05, a name and a version. Independent of the Java descriptions,
 * so it checks that the JSON really describes the bytes.
 */
public final class AnalyzerWalk {

    private static final Set<String> SIGNED = Set.of("int8", "int16", "int32", "int64", "int32 equal", "int64 equal",
            "uint8 equal", "uint16 equal");
    private static final Set<String> UNSIGNED = Set.of("uint8", "uint16", "uint32", "uint64", "uint32 equal");

    private AnalyzerWalk() {
    }

    public static JsonNode parse(String json) throws IOException {
        return new ObjectMapper().readTree(json);
    }

    /** @return field name to value: Long, Boolean, byte[], a nested map, or a list of those */
    public static Map<String, Object> read(JsonNode struct, DataInput in) throws IOException {
        Map<String, Object> data = new LinkedHashMap<>();
        for (JsonNode field : unfold(struct.get("fields"))) {
            String type = field.get("type").asText();
            Object v;
            if (type.equals("struct")) {
                v = read(field.get("struct"), in);
            } else {
                int size = field.get("size").asInt();
                byte[] raw = new byte[size];
                in.readFully(raw);
                if (type.equals("bool")) {
                    v = raw[0] != 0;
                } else if (SIGNED.contains(type) || UNSIGNED.contains(type)) {
                    long x = 0;
                    for (byte b : raw) {
                        x = x << 8 | (b & 0xff);
                    }
                    if (SIGNED.contains(type) && size < 8) {
                        x = x << (64 - 8 * size) >> (64 - 8 * size);
                    }
                    v = x;
                } else {
                    v = raw;
                }
            }
            String name = field.get("name").asText();
            Object prev = data.get(name);
            if (prev == null) {
                data.put(name, v);
            } else if (prev instanceof List<?> l) {
                @SuppressWarnings("unchecked") List<Object> list = (List<Object>) l;
                list.add(v);
            } else {
                data.put(name, new ArrayList<>(List.of(prev, v)));
            }
        }
        if (struct.has("subsections")) {
            for (JsonNode sub : struct.get("subsections")) {
                if (in.readUnsignedByte() != VMStateSaver.SUBSECTION) {
                    throw new IOException("subsection " + sub.get("vmsd_name").asText() + " not found");
                }
                byte[] name = new byte[in.readUnsignedByte()];
                in.readFully(name);
                in.readInt(); // the version; the JSON describes what this stream holds
                data.put(new String(name, StandardCharsets.UTF_8), read(sub, in));
            }
        }
        return data;
    }

    private static List<JsonNode> unfold(JsonNode fields) {
        List<JsonNode> out = new ArrayList<>();
        for (JsonNode f : fields) {
            if (!f.has("array_len")) {
                out.add(f);
                continue;
            }
            int n = f.get("array_len").asInt();
            for (int i = 0; i < n; i++) {
                ObjectNode c = ((ObjectNode) f).deepCopy();
                c.remove("array_len");
                c.put("index", i);
                out.add(c);
            }
        }
        return out;
    }
}
