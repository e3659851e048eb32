package dev.ferry.kvm;

import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.abort;

import dev.ferry.api.Availability;

/**
 * Gate for tests that need a working {@code /dev/kvm}: they are skipped, with the probe's reason,
 * where KVM is unusable, unless {@code FERRY_REQUIRE_KVM=1}, which turns the skip into a failure
 * (for machines that are supposed to have KVM, so a broken one cannot pass silently).
 */
final class KvmTestSupport {

    private static final Availability KVM = Kvm.probe();

    private KvmTestSupport() {
    }

    static void assumeKvm() {
        if (KVM.available()) {
            return;
        }
        if ("1".equals(System.getenv("FERRY_REQUIRE_KVM"))) {
            fail("FERRY_REQUIRE_KVM=1 but KVM is not usable: " + KVM.reason());
        }
        abort("skipped, KVM is not usable here: " + KVM.reason());
    }
}
