package dev.ferry.migration;

import dev.ferry.machine.MachineConfig;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;

import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

/**
 * The machine a stream comes from, carried as the name in the stream's configuration section
 * (where QEMU puts its machine type), e.g.
 * {@code ferry:accel=soft,mem=1073741824,vcpus=1,workload=random,rate=100.0,write-size=4096,...}.
 * The destination builds the same machine from it; QEMU instead needs the same command line on
 * both sides.
 *
 * @param accelerator the source's accelerator; vCPU state only loads into the same kind
 * @param config      RAM size, vCPUs and workload
 */
public record MachineDescription(String accelerator, MachineConfig config) {

    private static final String PREFIX = "ferry:";

    /** @return the configuration name */
    public String encode() {
        Workload w = config.workload();
        Map<String, String> m = new LinkedHashMap<>();
        m.put("accel", accelerator);
        m.put("mem", Long.toString(config.ramSize()));
        m.put("vcpus", Integer.toString(config.vcpus()));
        m.put("workload", w.pattern().toString());
        m.put("ws-offset", Long.toString(w.workingSetOffset()));
        m.put("ws-size", Long.toString(w.workingSetSize()));
        m.put("rate", Double.toString(w.rateMiBps()));
        m.put("write-size", Integer.toString(w.writeSize()));
        m.put("hot-fraction", Double.toString(w.hotFraction()));
        m.put("hot-probability", Double.toString(w.hotProbability()));
        m.put("seed", Long.toString(w.seed()));
        StringBuilder sb = new StringBuilder(PREFIX);
        m.forEach((k, v) -> sb.append(sb.length() == PREFIX.length() ? "" : ",").append(k).append('=').append(v));
        return sb.toString();
    }

    /**
     * @throws IllegalArgumentException naming what is wrong, if {@code name} is not a valid description
     */
    public static MachineDescription decode(String name) {
        if (!name.startsWith(PREFIX)) {
            throw new IllegalArgumentException("configuration '" + name + "' is not a Ferry machine");
        }
        Map<String, String> m = new LinkedHashMap<>();
        for (String kv : name.substring(PREFIX.length()).split(",")) {
            int eq = kv.indexOf('=');
            if (eq <= 0) {
                throw new IllegalArgumentException("bad machine configuration item '" + kv + "'");
            }
            m.put(kv.substring(0, eq), kv.substring(eq + 1));
        }
        try {
            Workload w = new Workload(Pattern.parse(get(m, "workload")), Long.parseLong(get(m, "ws-offset")),
                    Long.parseLong(get(m, "ws-size")), Double.parseDouble(get(m, "rate")),
                    Integer.parseInt(get(m, "write-size")), Double.parseDouble(get(m, "hot-fraction")),
                    Double.parseDouble(get(m, "hot-probability")), Long.parseLong(get(m, "seed")));
            MachineConfig c = new MachineConfig(Long.parseLong(get(m, "mem")), Integer.parseInt(get(m, "vcpus")), w,
                    Map.of(), true);
            return new MachineDescription(get(m, "accel").toLowerCase(Locale.ROOT), c);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("bad number in machine configuration: " + e.getMessage());
        }
    }

    private static String get(Map<String, String> m, String key) {
        String v = m.get(key);
        if (v == null) {
            throw new IllegalArgumentException("machine configuration lacks '" + key + "'");
        }
        return v;
    }
}
