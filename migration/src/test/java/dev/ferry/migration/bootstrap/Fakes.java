package dev.ferry.migration.bootstrap;

import dev.ferry.api.AcceleratorRequirements;
import dev.ferry.api.Availability;
import dev.ferry.api.DirtyTracker;
import dev.ferry.api.DirtyTrackerProvider;
import dev.ferry.api.MachineContext;
import dev.ferry.api.Options;
import dev.ferry.machine.Accelerator;
import dev.ferry.machine.AcceleratorProvider;
import dev.ferry.machine.soft.SoftAcceleratorProvider;

import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Function;

/**
 * Hand-made providers for the composition logic: real implementations of the SPIs with fixed
 * answers, so Bootstrap's choices can be checked on any host.
 */
final class Fakes {

    private Fakes() {
    }

    /** A tracker provider with fixed name, availability, priority, options, requirements and trackers. */
    static class Tracker implements DirtyTrackerProvider {

        final String name;
        final Availability availability;
        final int autoPriority;
        final Set<String> optionNames;
        final Function<Options, AcceleratorRequirements> needs;
        final Function<MachineContext, DirtyTracker> factory;

        Tracker(String name, Availability availability, int autoPriority, Set<String> optionNames,
                Function<Options, AcceleratorRequirements> needs, Function<MachineContext, DirtyTracker> factory) {
            this.name = name;
            this.availability = availability;
            this.autoPriority = autoPriority;
            this.optionNames = optionNames;
            this.needs = needs;
            this.factory = factory;
        }

        static Tracker of(String name, String... accelerators) {
            return new Tracker(name, Availability.yes(), 0, Set.of(), o -> AcceleratorRequirements.accelerator(accelerators),
                    m -> new DirtyTracker() {
                        @Override
                        public String name() {
                            return name;
                        }
                    });
        }

        Tracker unavailable(String reason) {
            return new Tracker(name, Availability.no(reason), autoPriority, optionNames, needs, factory);
        }

        Tracker auto(int priority) {
            return new Tracker(name, availability, priority, optionNames, needs, factory);
        }

        Tracker options(String... names) {
            return new Tracker(name, availability, autoPriority, Set.of(names), needs, factory);
        }

        Tracker needs(Function<Options, AcceleratorRequirements> f) {
            return new Tracker(name, availability, autoPriority, optionNames, f, factory);
        }

        Tracker creates(Function<MachineContext, DirtyTracker> f) {
            return new Tracker(name, availability, autoPriority, optionNames, needs, f);
        }

        @Override
        public String name() {
            return name;
        }

        @Override
        public String description() {
            return "fake tracker " + name;
        }

        @Override
        public Availability probe() {
            return availability;
        }

        @Override
        public int autoPriority() {
            return autoPriority;
        }

        @Override
        public Set<String> optionNames() {
            return optionNames;
        }

        @Override
        public AcceleratorRequirements requirements(Options options) {
            return needs.apply(options);
        }

        @Override
        public DirtyTracker create(MachineContext machine) {
            return factory.apply(machine);
        }
    }

    /** An accelerator provider that builds soft accelerators under any name. */
    record Accel(String name, Availability availability, int autoPriority) implements AcceleratorProvider {

        static Accel of(String name, int autoPriority) {
            return new Accel(name, Availability.yes(), autoPriority);
        }

        Accel unavailable(String reason) {
            return new Accel(name, Availability.no(reason), autoPriority);
        }

        @Override
        public String description() {
            return "fake accelerator " + name;
        }

        @Override
        public Availability probe() {
            return availability;
        }

        @Override
        public Accelerator create(Map<String, String> properties) {
            return new SoftAcceleratorProvider().create(properties);
        }
    }

    static Bootstrap bootstrap(List<? extends DirtyTrackerProvider> trackers, List<? extends AcceleratorProvider> accels) {
        return Bootstrap.create(new Plugins(List.copyOf(trackers), List.copyOf(accels), List.of()));
    }
}
