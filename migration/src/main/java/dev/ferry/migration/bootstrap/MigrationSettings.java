package dev.ferry.migration.bootstrap;

import dev.ferry.machine.MachineConfig;
import dev.ferry.migration.Incoming;
import dev.ferry.migration.MigrationParameters;
import dev.ferry.migration.channel.MigrationUri;

import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * What a user asks of a migration, as the command line gathers it: the guest, its trackers and
 * devices, the migration's parameters, and where it goes. {@link MigrationModule} turns it into
 * bindings.
 *
 * @param accelerator            an accelerator name or {@code auto}
 * @param trackers               a comma list of tracker names or {@code auto}
 * @param trackerOptions         tracker options by name
 * @param machine                RAM, vCPUs and workload
 * @param devices                device specs, {@code TYPE[:NAME=VALUE,...]}
 * @param parameters             the migration's tunables
 * @param target                 where the stream goes; empty for a destination in this process
 * @param destinationMaxRam      the biggest guest an in-process destination accepts
 * @param destinationPreallocate whether an in-process destination faults its RAM in first
 * @param deviceLoad             how an in-process destination applies device state
 */
public record MigrationSettings(String accelerator, String trackers, Map<String, String> trackerOptions,
                                MachineConfig machine, List<String> devices, MigrationParameters parameters,
                                Optional<MigrationUri> target, long destinationMaxRam, boolean destinationPreallocate,
                                Incoming.DeviceLoad deviceLoad) {

    public MigrationSettings {
        trackerOptions = Map.copyOf(trackerOptions);
        devices = List.copyOf(devices);
    }
}
