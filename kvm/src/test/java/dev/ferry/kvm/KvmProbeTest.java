package dev.ferry.kvm;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.api.Availability;

import java.nio.file.Files;
import java.nio.file.Path;

import org.junit.jupiter.api.Test;

/** {@link Kvm#probe()} on any host: it answers without throwing, and explains a no. */
class KvmProbeTest {

    @Test
    void probeAnswersAndExplainsWhyNot() {
        Availability a = Kvm.probe();
        if (!Files.exists(Path.of(Kvm.DEVICE))) {
            assertFalse(a.available());
            assertTrue(a.reason().contains("/dev/kvm does not exist"), a.reason());
        } else if (!a.available()) {
            assertFalse(a.reason().isBlank());
        }
    }
}
