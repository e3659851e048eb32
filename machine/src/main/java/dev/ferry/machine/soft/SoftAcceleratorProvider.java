package dev.ferry.machine.soft;

import dev.ferry.api.Availability;
import dev.ferry.machine.Accelerator;
import dev.ferry.machine.AcceleratorProvider;

import java.util.Map;

/** Provides the software accelerator, which works on every host. */
public final class SoftAcceleratorProvider implements AcceleratorProvider {

    @Override
    public String name() {
        return "soft";
    }

    @Override
    public String description() {
        return "software vCPUs in Java threads (like TCG); works everywhere";
    }

    @Override
    public Availability probe() {
        return Availability.yes();
    }

    @Override
    public int autoPriority() {
        return 0;
    }

    @Override
    public Accelerator create(Map<String, String> properties) {
        if (!properties.isEmpty()) {
            throw new IllegalArgumentException("the soft accelerator takes no property, got "
                    + String.join(", ", properties.keySet()));
        }
        return new SoftAccelerator();
    }
}
