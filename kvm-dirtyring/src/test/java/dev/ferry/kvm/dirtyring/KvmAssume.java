package dev.ferry.kvm.dirtyring;

import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.abort;

import dev.ferry.api.Availability;

/**
 * Gate for tests that need KVM with dirty rings: skipped with the provider's reason where they are
 * unusable, failed instead with FERRY_REQUIRE_KVM=1.
 */
final class KvmAssume {

    private static final Availability RING = new KvmDirtyRingProvider().probe();

    private KvmAssume() {
    }

    static void assumeDirtyRing() {
        if (RING.available()) {
            return;
        }
        if ("1".equals(System.getenv("FERRY_REQUIRE_KVM"))) {
            fail("FERRY_REQUIRE_KVM=1 but KVM dirty rings are not usable: " + RING.reason());
        }
        abort("skipped, KVM dirty rings are not usable here: " + RING.reason());
    }
}
