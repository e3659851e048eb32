package dev.ferry.kvm.dirtylog;

import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.abort;

import dev.ferry.api.Availability;
import dev.ferry.kvm.Kvm;

/**
 * Gate for tests that need a working {@code /dev/kvm} (as the kvm module's KvmTestSupport):
 * skipped with the probe's reason where KVM is unusable, failed instead with FERRY_REQUIRE_KVM=1.
 */
final class KvmAssume {

    private static final Availability KVM = Kvm.probe();

    private KvmAssume() {
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
