package dev.ferry.migration;

import dev.ferry.machine.MachineConfig;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;

import java.net.URLDecoder;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;

/**
 * The machine a stream comes from, carried as the name in the stream's configuration section
 * (where QEMU puts its machine type), e.g.
 * {@code ferry:accel=soft,mem=1073741824,vcpus=1,workload=random,rate=100.0,write-size=4096,...},
 * then one {@code device.ID=TYPE%3AOPTIONS} item per device (URL-encoded, options as
 * {@code name=value;...}). The destination builds the same machine and plugs the same devices,
 * in the same order, so their device memory and state sections line up; QEMU instead needs the
 * same command line on both sides.
 *
 * @param accelerator the source's accelerator; vCPU state only loads into the same kind
 * @param config      RAM size, vCPUs, workload and device memory
 * @param devices     the devices, in plug order
 */
public record MachineDescription(String accelerator, MachineConfig config, List<Device> devices) {

    private static final String PREFIX = "ferry:";
    private static final String DEVICE = "device.";
    /** Most devices a description may name. */
    public static final int MAX_DEVICES = 1024;

    /**
     * A device as the source plugged it.
     *
     * @param type    its provider's name
     * @param id      its id in the machine
     * @param options its options
     */
    public record Device(String type, String id, Map<String, String> options) {
        public Device {
            options = Map.copyOf(options);
        }
    }

    public MachineDescription {
        devices = List.copyOf(devices);
    }

    /** A machine without devices. */
    public MachineDescription(String accelerator, MachineConfig config) {
        this(accelerator, config, List.of());
    }

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
        m.put("device-memory", Long.toString(config.deviceMemory()));
        for (Device d : devices) {
            StringBuilder opts = new StringBuilder(d.type()).append(':');
            new TreeMap<>(d.options()).forEach((k, v) -> opts.append(k).append('=').append(v).append(';'));
            m.put(DEVICE + URLEncoder.encode(d.id(), StandardCharsets.UTF_8),
                    URLEncoder.encode(opts.toString(), StandardCharsets.UTF_8));
        }
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
        List<Device> devices = new ArrayList<>();
        for (String kv : name.substring(PREFIX.length()).split(",")) {
            int eq = kv.indexOf('=');
            if (eq <= 0) {
                throw new IllegalArgumentException("bad machine configuration item '" + kv + "'");
            }
            if (kv.startsWith(DEVICE)) {
                if (devices.size() == MAX_DEVICES) {
                    throw new IllegalArgumentException("the machine configuration names more than " + MAX_DEVICES
                            + " devices");
                }
                devices.add(decodeDevice(kv.substring(DEVICE.length(), eq), kv.substring(eq + 1)));
            } else {
                m.put(kv.substring(0, eq), kv.substring(eq + 1));
            }
        }
        try {
            Workload w = new Workload(Pattern.parse(get(m, "workload")), Long.parseLong(get(m, "ws-offset")),
                    Long.parseLong(get(m, "ws-size")), Double.parseDouble(get(m, "rate")),
                    Integer.parseInt(get(m, "write-size")), Double.parseDouble(get(m, "hot-fraction")),
                    Double.parseDouble(get(m, "hot-probability")), Long.parseLong(get(m, "seed")));
            MachineConfig c = new MachineConfig(Long.parseLong(get(m, "mem")), Integer.parseInt(get(m, "vcpus")), w,
                    Map.of(), true, Long.parseLong(m.getOrDefault("device-memory", "0")));
            return new MachineDescription(get(m, "accel").toLowerCase(Locale.ROOT), c, devices);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("bad number in machine configuration: " + e.getMessage());
        }
    }

    private static Device decodeDevice(String encodedId, String encodedSpec) {
        String id;
        String spec;
        try {
            id = URLDecoder.decode(encodedId, StandardCharsets.UTF_8);
            spec = URLDecoder.decode(encodedSpec, StandardCharsets.UTF_8);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("bad device item in machine configuration: " + e.getMessage());
        }
        int colon = spec.indexOf(':');
        if (id.isEmpty() || colon <= 0) {
            throw new IllegalArgumentException("bad device '" + id + "' in machine configuration: '" + spec + "'");
        }
        Map<String, String> options = new LinkedHashMap<>();
        for (String kv : spec.substring(colon + 1).split(";")) {
            if (kv.isEmpty()) {
                continue;
            }
            int eq = kv.indexOf('=');
            if (eq <= 0 || options.put(kv.substring(0, eq), kv.substring(eq + 1)) != null) {
                throw new IllegalArgumentException("bad option '" + kv + "' of device " + id + " in machine configuration");
            }
        }
        return new Device(spec.substring(0, colon), id, options);
    }

    private static String get(Map<String, String> m, String key) {
        String v = m.get(key);
        if (v == null) {
            throw new IllegalArgumentException("machine configuration lacks '" + key + "'");
        }
        return v;
    }
}
