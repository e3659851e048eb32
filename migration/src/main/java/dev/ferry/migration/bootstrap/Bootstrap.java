package dev.ferry.migration.bootstrap;

import com.google.inject.Guice;
import com.google.inject.Inject;
import com.google.inject.Injector;
import com.google.inject.Module;
import dev.ferry.api.AcceleratorRequirements;
import dev.ferry.api.Availability;
import dev.ferry.api.Device;
import dev.ferry.api.DeviceProvider;
import dev.ferry.api.DirtyTracker;
import dev.ferry.api.DirtyTrackerProvider;
import dev.ferry.api.Options;
import dev.ferry.machine.AcceleratorProvider;
import dev.ferry.machine.Machine;
import dev.ferry.machine.MachineConfig;
import dev.ferry.migration.Incoming;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * Chooses accelerator, trackers and devices by name and builds tracked machines. The providers come
 * from the Guice module ({@link FerryModule}), which got them from {@link Plugins}.
 */
public final class Bootstrap {

    /** The word that asks Ferry to choose. */
    public static final String AUTO = "auto";

    private final Map<String, DirtyTrackerProvider> trackers;
    private final Map<String, AcceleratorProvider> accelerators;
    private final Map<String, DeviceProvider> devices;
    private final Map<String, Availability> probes = new HashMap<>();

    /** Engine option of a device spec: how many such devices to plug. */
    public static final String COUNT = "count";
    /** Most devices one spec may ask for. */
    public static final int MAX_COUNT = 64;

    @Inject
    Bootstrap(Map<String, DirtyTrackerProvider> trackers, Map<String, AcceleratorProvider> accelerators,
              Map<String, DeviceProvider> devices) {
        this.trackers = new TreeMap<>(trackers);
        this.accelerators = new TreeMap<>(accelerators);
        this.devices = new TreeMap<>(devices);
    }

    /** @return a bootstrap over the providers on the class path */
    public static Bootstrap create() {
        return create(Plugins.discover());
    }

    /** @return a bootstrap over the given providers */
    public static Bootstrap create(Plugins plugins) {
        return injector(plugins, new FerryModule(plugins)).getInstance(Bootstrap.class);
    }

    /**
     * Creates an injector from {@code module}, which includes a {@link FerryModule} of
     * {@code plugins}.
     *
     * @throws IllegalStateException in one line, for a plugin configuration error
     */
    static Injector injector(Plugins plugins, Module module) {
        try {
            return Guice.createInjector(module);
        } catch (com.google.inject.CreationException e) {
            // Guice's message is a page long and starts "Unable to create injector"; the command
            // line shows one line, so say what is wrong (two plugins claiming one name) there.
            List<String> errors = new ArrayList<>();
            for (com.google.inject.spi.Message m : e.getErrorMessages()) {
                errors.add(m.getMessage().lines().findFirst().orElse("").trim());
            }
            Map<String, List<String>> classes = new TreeMap<>();
            plugins.trackers().forEach(p -> classes.computeIfAbsent("tracker " + p.name(), k -> new ArrayList<>())
                    .add(p.getClass().getName()));
            plugins.accelerators().forEach(p -> classes.computeIfAbsent("accelerator " + p.name(), k -> new ArrayList<>())
                    .add(p.getClass().getName()));
            classes.values().removeIf(l -> l.size() < 2);
            throw new IllegalStateException("plugin configuration error: " + String.join("; ", errors)
                    + (classes.isEmpty() ? "" : " (claimed by " + classes + ")"), e);
        }
    }

    private synchronized Availability probe(String key, Object provider, java.util.function.Supplier<Availability> probe) {
        return probes.computeIfAbsent(key, k -> {
            try {
                return java.util.Objects.requireNonNull(probe.get(), "probe() returned null");
            } catch (RuntimeException | LinkageError e) {
                // A probe must not throw; one that does (or a plugin missing a class) is a
                // broken plugin, and the user needs to know which.
                String why = e.getMessage() == null || e instanceof LinkageError
                        ? e.getClass().getSimpleName() + (e.getMessage() == null ? "" : ": " + e.getMessage())
                        : e.getMessage();
                return Availability.no("probe failed" + Plugins.origin(provider).map(n -> " in " + n).orElse("") + ": " + why);
            }
        });
    }

    private static String describe(String description, Object provider) {
        return description + Plugins.origin(provider).map(n -> " [" + n + "]").orElse("");
    }

    private Availability probe(DirtyTrackerProvider p) {
        return probe("tracker:" + p.name(), p, p::probe);
    }

    private Availability probe(AcceleratorProvider p) {
        return probe("accel:" + p.name(), p, p::probe);
    }

    private Availability probe(DeviceProvider p) {
        return probe("device:" + p.name(), p, p::probe);
    }

    /** @return every discovered tracker, by name, with its availability here */
    public List<PluginInfo> trackers() {
        List<PluginInfo> out = new ArrayList<>();
        for (DirtyTrackerProvider p : trackers.values()) {
            Availability a = probe(p);
            out.add(new PluginInfo(p.name(), a.available(), a.reason(), describe(p.description(), p)));
        }
        return out;
    }

    /** @return every discovered device type, by name, with its availability here */
    public List<PluginInfo> devices() {
        List<PluginInfo> out = new ArrayList<>();
        for (DeviceProvider p : devices.values()) {
            Availability a = probe(p);
            out.add(new PluginInfo(p.name(), a.available(), a.reason(), describe(p.description(), p)));
        }
        return out;
    }

    /**
     * Resolves device specs, each {@code TYPE[:NAME=VALUE,...]}; the option {@code count=N}
     * asks for N devices of that kind (ids {@code TYPE0}, {@code TYPE1}, ... per type).
     *
     * @throws UsageException with a one-line message naming the spec and what is wrong
     */
    public List<DeviceRequest> devices(List<String> specs) {
        List<DeviceRequest> out = new ArrayList<>();
        Map<String, Integer> next = new HashMap<>();
        for (String spec : specs) {
            int colon = spec.indexOf(':');
            String type = (colon < 0 ? spec : spec.substring(0, colon)).trim();
            DeviceProvider p = devices.get(type);
            if (p == null) {
                throw new UsageException("unknown device type '" + type + "' in '" + spec + "'; known: "
                        + (devices.isEmpty() ? "none (see ferry devices)" : String.join(", ", devices.keySet())));
            }
            Availability a = probe(p);
            if (!a.available()) {
                throw new UsageException("device " + type + " is not available here: " + a.reason());
            }
            Map<String, String> options = new TreeMap<>();
            if (colon >= 0 && colon < spec.length() - 1) {
                for (String item : spec.substring(colon + 1).split(",", -1)) {
                    int eq = item.indexOf('=');
                    if (eq <= 0 || eq == item.length() - 1) {
                        throw new UsageException("bad option '" + item + "' in device spec '" + spec
                                + "'; write TYPE:NAME=VALUE,NAME=VALUE");
                    }
                    if (options.put(item.substring(0, eq).trim(), item.substring(eq + 1).trim()) != null) {
                        throw new UsageException("option " + item.substring(0, eq) + " given twice in '" + spec + "'");
                    }
                }
            }
            int count = 1;
            String c = options.remove(COUNT);
            if (c != null) {
                try {
                    count = Integer.parseInt(c);
                } catch (NumberFormatException e) {
                    count = -1;
                }
                if (count < 1 || count > MAX_COUNT) {
                    throw new UsageException("count must be 1 to " + MAX_COUNT + " in '" + spec + "', got " + c);
                }
            }
            Options opts = Options.of(options);
            long guestMemory;
            try {
                opts.requireOnly(p.optionNames(), "device " + type, "it understands " + (p.optionNames().isEmpty()
                        ? "no options" : String.join(", ", new java.util.TreeSet<>(p.optionNames()))) + " (and count)");
                guestMemory = p.guestMemory(opts); // validates the options before anything is built
            } catch (IllegalArgumentException e) {
                throw new UsageException(e.getMessage().startsWith("device ") ? e.getMessage()
                        : "device " + type + ": " + e.getMessage());
            }
            for (int i = 0; i < count; i++) {
                int index = next.merge(type, 1, Integer::sum) - 1;
                out.add(new DeviceRequest(p, type + index, opts, guestMemory));
            }
        }
        return out;
    }

    /** @return the discovered device providers, by name */
    public Map<String, DeviceProvider> deviceProviders() {
        return java.util.Collections.unmodifiableMap(devices);
    }

    /**
     * @return a destination that builds machines with this bootstrap's accelerators and devices
     * @see Incoming#Incoming
     */
    public Incoming incoming(long maxRamBytes, boolean preallocate, Incoming.DeviceLoad deviceLoad) {
        return new Incoming(accelerators, devices, maxRamBytes, preallocate, deviceLoad);
    }

    /** @return the discovered accelerator providers, by name */
    public Map<String, AcceleratorProvider> acceleratorProviders() {
        return java.util.Collections.unmodifiableMap(accelerators);
    }

    /** @return every discovered accelerator's name and availability */
    public Map<String, Availability> accelerators() {
        Map<String, Availability> out = new LinkedHashMap<>();
        accelerators.values().forEach(p -> out.put(p.name(), probe(p)));
        return out;
    }

    /**
     * Resolves the user's choice.
     *
     * @param accelerator an accelerator name or {@code auto}
     * @param trackerList a comma list of tracker names, or {@code auto}
     * @param options     tracker options by name; each must be understood by a chosen tracker
     * @throws UsageException with a one-line message saying what is wrong and what is available
     */
    public Plan plan(String accelerator, String trackerList, Map<String, String> options) {
        AcceleratorProvider accel = AUTO.equals(accelerator) ? null : accelerator(accelerator);
        List<DirtyTrackerProvider> chosen = new ArrayList<>();
        if (AUTO.equals(trackerList.trim())) {
            if (accel == null) {
                // Both automatic: the best accelerator that some available tracker can serve.
                accel = accelerators.values().stream()
                        .filter(p -> probe(p).available())
                        .sorted(Comparator.comparingInt(AcceleratorProvider::autoPriority).reversed())
                        .filter(p -> findAutoTracker(p, options) != null)
                        .findFirst()
                        .orElseGet(() -> bestAccelerator(List.of(), Map.of()));
            }
            chosen.add(autoTracker(accel, options));
        } else {
            for (String name : parseList(trackerList)) {
                chosen.add(tracker(name));
            }
        }
        Map<String, Options> trackerOptions = splitOptions(chosen, options);
        Map<DirtyTrackerProvider, AcceleratorRequirements> needs = new LinkedHashMap<>();
        for (DirtyTrackerProvider p : chosen) {
            try {
                needs.put(p, p.requirements(trackerOptions.get(p.name())));
            } catch (IllegalArgumentException e) {
                throw new UsageException("tracker " + p.name() + ": " + e.getMessage());
            }
        }
        if (accel == null) {
            accel = bestAccelerator(chosen, needs);
        } else {
            for (var e : needs.entrySet()) {
                if (!e.getValue().accepts(accel.name())) {
                    throw new UsageException("tracker " + e.getKey().name() + " needs the "
                            + String.join(" or ", new java.util.TreeSet<>(e.getValue().accelerators()))
                            + " accelerator, but --accel " + accel.name() + " was chosen");
                }
            }
        }
        Map<String, String> properties = new TreeMap<>();
        for (var e : needs.entrySet()) {
            for (var prop : e.getValue().properties().entrySet()) {
                String old = properties.putIfAbsent(prop.getKey(), prop.getValue());
                if (old != null && !old.equals(prop.getValue())) {
                    throw new UsageException("trackers disagree on accelerator property " + prop.getKey()
                            + ": " + old + " vs " + prop.getValue() + " (from " + e.getKey().name() + ")");
                }
            }
        }
        return new Plan(accel, chosen, trackerOptions, properties);
    }

    private static List<String> parseList(String list) {
        Set<String> names = new LinkedHashSet<>();
        for (String raw : list.split(",", -1)) {
            String name = raw.trim();
            if (name.isEmpty()) {
                throw new UsageException("empty name in tracker list '" + list + "'; give names separated by commas, or auto");
            }
            if (!names.add(name)) {
                throw new UsageException("tracker " + name + " is listed twice");
            }
        }
        return List.copyOf(names);
    }

    private AcceleratorProvider accelerator(String name) {
        AcceleratorProvider p = accelerators.get(name);
        if (p == null) {
            throw new UsageException("unknown accelerator '" + name + "'; known: auto, "
                    + String.join(", ", accelerators.keySet()));
        }
        Availability a = probe(p);
        if (!a.available()) {
            throw new UsageException("accelerator " + name + " is not available here: " + a.reason()
                    + " (use --accel auto to fall back to one that is)");
        }
        return p;
    }

    private DirtyTrackerProvider tracker(String name) {
        DirtyTrackerProvider p = trackers.get(name);
        if (p == null) {
            throw new UsageException("unknown tracker '" + name + "'; " + describeAvailable());
        }
        Availability a = probe(p);
        if (!a.available()) {
            throw new UsageException("tracker " + name + " is not available here: " + a.reason() + "; "
                    + describeAvailable());
        }
        return p;
    }

    private String describeAvailable() {
        List<String> ok = new ArrayList<>();
        for (PluginInfo t : trackers()) {
            if (t.available()) {
                ok.add(t.name());
            }
        }
        return ok.isEmpty() ? "no tracker is available here (see ferry trackers)"
                : "available here: " + String.join(", ", ok) + " (or auto)";
    }

    private AcceleratorProvider bestAccelerator(List<DirtyTrackerProvider> chosen,
                                                Map<DirtyTrackerProvider, AcceleratorRequirements> needs) {
        return accelerators.values().stream()
                .filter(p -> probe(p).available())
                .filter(p -> needs.values().stream().allMatch(r -> r.accepts(p.name())))
                .max(Comparator.comparingInt(AcceleratorProvider::autoPriority))
                .orElseThrow(() -> new UsageException(chosen.isEmpty()
                        ? "no accelerator is available here"
                        : "no available accelerator suits trackers " + String.join(",",
                        chosen.stream().map(DirtyTrackerProvider::name).toList())
                        + "; available accelerators: " + String.join(", ", accelerators.values().stream()
                        .filter(p -> probe(p).available()).map(AcceleratorProvider::name).toList())));
    }

    private DirtyTrackerProvider autoTracker(AcceleratorProvider accel, Map<String, String> options) {
        DirtyTrackerProvider p = findAutoTracker(accel, options);
        if (p == null) {
            throw new UsageException("no available tracker works with the " + accel.name()
                    + " accelerator; " + describeAvailable());
        }
        return p;
    }

    private DirtyTrackerProvider findAutoTracker(AcceleratorProvider accel, Map<String, String> options) {
        return trackers.values().stream()
                .filter(p -> p.autoPriority() > 0 && probe(p).available())
                .filter(p -> {
                    try {
                        return p.requirements(Options.of(only(p, options))).accepts(accel.name());
                    } catch (IllegalArgumentException e) {
                        return false;
                    }
                })
                .max(Comparator.comparingInt(DirtyTrackerProvider::autoPriority))
                .orElse(null);
    }

    private static Map<String, String> only(DirtyTrackerProvider p, Map<String, String> options) {
        Map<String, String> mine = new TreeMap<>();
        options.forEach((k, v) -> {
            if (p.optionNames().contains(k)) {
                mine.put(k, v);
            }
        });
        return mine;
    }

    private static Map<String, Options> splitOptions(List<DirtyTrackerProvider> chosen, Map<String, String> options) {
        for (String key : options.keySet()) {
            if (chosen.stream().noneMatch(p -> p.optionNames().contains(key))) {
                throw new UsageException("option " + key + " is not understood by tracker(s) "
                        + String.join(",", chosen.stream().map(DirtyTrackerProvider::name).toList()));
            }
        }
        Map<String, Options> out = new HashMap<>();
        for (DirtyTrackerProvider p : chosen) {
            out.put(p.name(), Options.of(only(p, options)));
        }
        return out;
    }

    /**
     * Builds the machine the plan describes and attaches its trackers. The vCPUs do not run yet.
     *
     * @throws UsageException for a configuration the accelerator or a tracker refuses
     */
    public TrackedMachine build(Plan plan, MachineConfig config) {
        return build(plan, config, List.of());
    }

    /**
     * Builds the machine the plan describes, attaches its trackers and plugs its devices, each
     * with the guest memory it asked for set aside at the top of RAM. The vCPUs do not run yet.
     *
     * @throws UsageException for a configuration the accelerator, a tracker or a device refuses
     */
    public TrackedMachine build(Plan plan, MachineConfig config, List<DeviceRequest> deviceRequests) {
        long deviceMemory = config.deviceMemory();
        for (DeviceRequest r : deviceRequests) {
            deviceMemory += r.guestMemory();
        }
        if (deviceMemory > 0 && deviceMemory >= config.ramSize()) {
            throw new UsageException(String.format("the devices need %.1f MiB of guest RAM for their rings and buffers, "
                    + "but the guest has %.1f MiB; give it more memory or the devices fewer queues or buffers",
                    deviceMemory / 1048576.0, config.ramSize() / 1048576.0));
        }
        Machine machine;
        try {
            machine = Machine.create(config.withAcceleratorProperties(plan.acceleratorProperties())
                    .withDeviceMemory(deviceMemory), plan.accelerator());
        } catch (IllegalArgumentException e) {
            throw new UsageException(e.getMessage());
        }
        List<DirtyTracker> attached = new ArrayList<>();
        try {
            for (DirtyTrackerProvider p : plan.trackers()) {
                DirtyTracker t = p.create(machine.context(plan.trackerOptions().get(p.name())));
                attached.add(t);
                machine.systemMemory().registerListener(t);
            }
            plugDevices(machine, deviceRequests, true);
        } catch (RuntimeException e) {
            new TrackedMachine(machine, attached, plan, List.of()).close();
            throw e;
        }
        return new TrackedMachine(machine, attached, plan, deviceRequests);
    }

    /**
     * Creates and plugs devices, each with the guest memory it asked for, in order.
     *
     * @param boot whether the machine boots with them (a source), rather than waiting for their
     *             state from an incoming migration (a destination)
     * @throws UsageException if a device refuses its options
     */
    public static void plugDevices(Machine machine, List<DeviceRequest> requests, boolean boot) {
        for (DeviceRequest r : requests) {
            Device d;
            try {
                d = r.provider().create(r.id(), machine.deviceContext(r.options(),
                        r.guestMemory() == 0 ? null : machine.allocateDeviceMemory(r.guestMemory())));
            } catch (IllegalArgumentException e) {
                throw new UsageException("device " + r.id() + ": " + e.getMessage());
            }
            machine.plug(d);
            if (boot) {
                d.boot();
            }
        }
    }
}
