package dev.ferry.migration;

import dev.ferry.api.Options;
import dev.ferry.machine.MachineConfig;
import dev.ferry.machine.ivshmem.IvshmemProvider;
import dev.ferry.machine.workload.Pattern;
import dev.ferry.machine.workload.Workload;
import dev.ferry.migration.bootstrap.Bootstrap;
import dev.ferry.migration.bootstrap.DeviceRequest;
import dev.ferry.migration.bootstrap.TrackedMachine;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The seeds of {@link DestinationFuzzTest}: streams saved by a real {@link Migration} (a fuzzer
 * starting from random bytes would spend its time finding the magic and a machine description).
 * They are committed under {@code src/test/resources}; when the stream format changes,
 * {@code DestinationFuzzTest#theSeedsAreStreamsThisDestinationTakes} fails and this regenerates
 * them:
 *
 * <pre>./mvnw -o -q test-compile -pl migration &amp;&amp; java --enable-native-access=ALL-UNNAMED \
 *   -cp "$(cat target/test.classpath)" dev.ferry.migration.DestinationFuzzSeeds migration/src/test/resources</pre>
 */
final class DestinationFuzzSeeds {

    /** The destination takes guests up to this size: the seeds' 2 MiB and room to grow. */
    static final long MAX_RAM = 8L << 20;
    static final String SAVED = "savedStream";
    static final String SOCKET = "socketStream";
    static final Path INPUTS = Path.of("dev/ferry/migration/DestinationFuzzTestInputs");

    private DestinationFuzzSeeds() {
    }

    /** @return seed file names and contents, by fuzz test method */
    static Map<String, Map<String, byte[]>> generate() {
        Map<String, byte[]> saved = new LinkedHashMap<>();
        saved.put("hand-made", StreamBuilder.valid());
        saved.put("idle-1cpu", save(1, List.of()));
        saved.put("idle-2cpu-ivshmem", save(2,
                List.of(new DeviceRequest(new IvshmemProvider(), "shm0", Options.of(Map.of("size", "64")), 0))));
        // Over a socket the destination reports digests and waits for the source's verdict,
        // the byte after the stream: GO, or ABORT.
        Map<String, byte[]> socket = new LinkedHashMap<>();
        saved.forEach((name, bytes) -> {
            socket.put(name + "-go", withVerdict(bytes, ReturnPath.GO));
        });
        socket.put("idle-1cpu-abort", withVerdict(saved.get("idle-1cpu"), ReturnPath.ABORT));
        return Map.of(SAVED, saved, SOCKET, socket);
    }

    private static byte[] withVerdict(byte[] stream, int verdict) {
        byte[] b = Arrays.copyOf(stream, stream.length + 1);
        b[stream.length] = (byte) verdict;
        return b;
    }

    /**
     * @return the file an idle 2 MiB soft guest saves, with a few pages of data and its devices:
     *         small, since a fuzzer mutates small inputs better
     */
    private static byte[] save(int vcpus, List<DeviceRequest> devices) {
        Bootstrap b = TestSupport.bootstrap();
        Workload w = Workload.of(Pattern.IDLE, 0);
        try (TrackedMachine tm = b.build(b.plan("soft", "soft", Map.of()),
                MachineConfig.of(StreamBuilder.RAM, vcpus, w).withPreallocate(false), devices)) {
            // Pages of different contents, so that page data, zero pages and their runs all appear.
            tm.machine().ram().host().asSlice(0, 4096).fill((byte) 0xa5);
            tm.machine().ram().host().asSlice(5 * 4096, 4096).fill((byte) 0x01);
            tm.machine().ram().host().asSlice(StreamBuilder.RAM - 4096, 4096).fill((byte) 0xc3);
            TestSupport.Sink sink = new TestSupport.Sink();
            MigrationStats st = new Migration(tm, new TestSupport.WriteConnection(sink), TestSupport.params())
                    .run(p -> {
                    });
            if (st.status() != MigrationStatus.COMPLETED) {
                throw new IllegalStateException("the seed's migration failed: " + st.error());
            }
            return sink.bytes();
        }
    }

    public static void main(String[] args) throws IOException {
        Path root = Path.of(args.length > 0 ? args[0] : "migration/src/test/resources").resolve(INPUTS);
        for (Map.Entry<String, Map<String, byte[]>> method : generate().entrySet()) {
            Path dir = root.resolve(method.getKey());
            Files.createDirectories(dir);
            for (Map.Entry<String, byte[]> seed : method.getValue().entrySet()) {
                Files.write(dir.resolve(seed.getKey()), seed.getValue());
                System.out.printf("%s/%s: %d bytes%n", method.getKey(), seed.getKey(), seed.getValue().length);
            }
        }
    }
}
