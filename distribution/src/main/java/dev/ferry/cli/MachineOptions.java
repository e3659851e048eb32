package dev.ferry.cli;

import dev.ferry.machine.HostMemory;
import dev.ferry.machine.MachineConfig;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.Option;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** The options that describe a guest and how to track it, shared by the commands that run one. */
final class MachineOptions {

    @Option(names = "--accel", paramLabel = "ACCEL", defaultValue = "auto",
            description = "Accelerator: kvm, soft, or auto (KVM where usable). Default: ${DEFAULT-VALUE}.")
    String accelerator;

    @Option(names = "--trackers", paramLabel = "LIST", defaultValue = "auto",
            description = "Dirty trackers, comma-separated, or auto. See 'ferry trackers'. Default: ${DEFAULT-VALUE}.")
    String trackers;

    @Option(names = "--mem", paramLabel = "SIZE", defaultValue = "1G", converter = SizeConverter.class,
            description = "Guest RAM, a multiple of 2 MiB (e.g. 512M, 4G). Default: ${DEFAULT-VALUE}.")
    long memory;

    @Option(names = "--vcpus", paramLabel = "N", defaultValue = "1",
            description = "Number of vCPUs. Default: ${DEFAULT-VALUE}.")
    int vcpus;

    @Option(names = "--workload", paramLabel = "PATTERN", defaultValue = "random", converter = PatternConverter.class,
            description = "What the guest writes: sequential, random, hotcold or idle. Default: ${DEFAULT-VALUE}.")
    Pattern pattern;

    @Option(names = "--rate", paramLabel = "MIBPS", defaultValue = "100",
            description = "Target dirty rate in MiB/s over all vCPUs; 0 for as fast as possible. Default: ${DEFAULT-VALUE}.")
    double rate;

    @Option(names = "--write-size", paramLabel = "BYTES", defaultValue = "4096",
            description = "Bytes the guest writes into each page it touches (1-4096). Default: ${DEFAULT-VALUE}.")
    int writeSize;

    @Option(names = "--dirty-ring-size", paramLabel = "ENTRIES",
            description = "Entries per vCPU of the KVM dirty ring (tracker kvm-dirtyring).")
    Long dirtyRingSize;

    @Option(names = "--vhost", paramLabel = "TYPE[:OPTIONS]",
            description = "A vhost device, net or blk, with options, e.g. net:queues=48,rate=50 or "
                    + "blk:queues=4,count=16 (count: how many such devices); repeatable. Options: queues, rate (MiB/s "
                    + "the backend writes into guest RAM), pattern, buffers, queue-size, backend (kernel or user), "
                    + "log (on or off). See 'ferry devices'.")
    List<String> vhost = new ArrayList<>();

    @Option(names = "--device", paramLabel = "NAME[:OPTIONS]",
            description = "A device by its name in 'ferry devices', with options NAME=VALUE,...; repeatable.")
    List<String> devices = new ArrayList<>();

    @Option(names = "--vhost-log-scan", paramLabel = "MODE",
            description = "Who scans guest memory in the shared vhost log on each sync: elected (one vhost dev per "
                    + "backend type, as QEMU 9.1) or every-dev (each vhost dev, as before). Default: elected.")
    String vhostLogScan;

    @Option(names = {"-o", "--tracker-option"}, paramLabel = "NAME=VALUE",
            description = "An option for the chosen trackers; repeatable.")
    Map<String, String> trackerOptions = new LinkedHashMap<>();

    Workload workload() {
        if (rate < 0 || Double.isNaN(rate) || Double.isInfinite(rate)) {
            throw new IllegalArgumentException("--rate must be a non-negative number of MiB/s, got " + rate);
        }
        if (writeSize < 1 || writeSize > 4096) {
            throw new IllegalArgumentException("--write-size must be 1 to 4096, got " + writeSize);
        }
        return new Workload(pattern, 0, 0, rate, writeSize, 0.1, 0.9, 1);
    }

    @Option(names = "--no-prealloc", negatable = false,
            description = "Do not fault guest RAM in at start (QEMU's -mem-prealloc is the default here).")
    boolean noPrealloc;

    MachineConfig config() {
        try {
            return MachineConfig.of(memory, vcpus, workload()).withPreallocate(!noPrealloc);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(e.getMessage().replace("memory size", "--mem").replace("vCPU count", "--vcpus"));
        }
    }

    /**
     * Refuses, before anything is allocated, guest RAM this host cannot hold: preallocated or not,
     * the guest's pages would be faulted in until the kernel's OOM killer ended the process.
     *
     * @param copies how many copies of guest RAM this process will hold (2 with an in-process
     *               destination, or an audit's copy)
     * @param what   who needs them, e.g. "the guest and its destination in this process"
     */
    void requireHostMemory(int copies, String what) {
        requireHostMemory(memory, copies, what);
    }

    /** As {@link #requireHostMemory(int, String)}, for a command whose --mem is its own option. */
    static void requireHostMemory(long memory, int copies, String what) {
        long need = memory > Long.MAX_VALUE / copies ? Long.MAX_VALUE : memory * copies;
        HostMemory.probe().shortfall(need).ifPresent(why -> {
            throw new IllegalArgumentException("--mem " + Sizes.format(memory) + ": " + what
                    + (copies == 1 ? " needs " : " need ") + HostMemory.gib(need) + " of RAM, but " + why
                    + "; use a smaller --mem");
        });
    }

    /** @return the device specs of --device and --vhost (as vhost-TYPE), with --vhost-log-scan applied */
    List<String> deviceSpecs() {
        if (vhostLogScan != null && !vhostLogScan.equals("elected") && !vhostLogScan.equals("every-dev")) {
            throw new IllegalArgumentException("--vhost-log-scan must be elected or every-dev, got '" + vhostLogScan + "'");
        }
        List<String> specs = new ArrayList<>(devices);
        for (String v : vhost) {
            String type = v.trim().split(":", 2)[0];
            if (!type.equals("net") && !type.equals("blk")) {
                throw new IllegalArgumentException("--vhost " + v + ": the type must be net or blk, got '" + type + "'");
            }
            String spec = "vhost-" + v.trim();
            if (vhostLogScan != null) {
                spec += (spec.contains(":") ? "," : ":") + "log-scan=" + vhostLogScan;
            }
            specs.add(spec);
        }
        return specs;
    }

    Map<String, String> options() {
        Map<String, String> all = new LinkedHashMap<>(trackerOptions);
        if (dirtyRingSize != null) {
            all.put("dirty-ring-size", Long.toString(dirtyRingSize));
        }
        return all;
    }

    static final class SizeConverter implements ITypeConverter<Long> {
        @Override
        public Long convert(String value) {
            try {
                return Sizes.parse(value);
            } catch (IllegalArgumentException e) {
                // picocli shows a TypeConversionException's message as is; any other exception
                // it prints with its class name ("java.lang.IllegalArgumentException: ...").
                throw new picocli.CommandLine.TypeConversionException(e.getMessage());
            }
        }
    }

    static final class PatternConverter implements ITypeConverter<Pattern> {
        @Override
        public Pattern convert(String value) {
            try {
                return Pattern.parse(value);
            } catch (IllegalArgumentException e) {
                throw new picocli.CommandLine.TypeConversionException(e.getMessage());
            }
        }
    }
}
