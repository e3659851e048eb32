package dev.ferry.kvm;

import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.abort;

import dev.ferry.api.Availability;

/**
 * The gate for every test that needs a working {@code /dev/kvm}, in this module and (through
 * its test jar) the trackers' and the distribution's: such a test is skipped with the probe's
 * reason where KVM is unusable, unless {@code FERRY_REQUIRE_KVM=1}, which turns the skip into a
 * failure (for machines that are supposed to have KVM, so a broken one cannot pass silently).
 */
public final class KvmTestSupport {

    /**
     * The JUnit tag of every test that needs /dev/kvm, so CI can run them where KVM is (through
     * kvm-in-tcg where the host has none): {@code ./mvnw verify -Dgroups=kvm}.
     */
    public static final String TAG = "kvm";

    /**
     * PVM answers /dev/kvm, but it is not the KVM these tests are about: it emulates the guest
     * instruction by instruction (their timings assume a guest that runs) and overflows dirty
     * rings. {@code ./kvm-tests} runs them on upstream KVM inside kvm-in-tcg on such a host.
     */
    private static final Availability KVM = Kvm.isPvm()
            ? Availability.no("this host's KVM is PVM (module kvm_pvm), not upstream KVM: ./kvm-tests runs these "
                    + "tests on upstream KVM inside kvm-in-tcg here")
            : Kvm.probe();

    private KvmTestSupport() {
    }

    /** Skips or fails the calling test unless KVM is usable. */
    public static void assumeKvm() {
        assume(KVM, "KVM");
    }

    /**
     * Skips or fails the calling test unless {@code feature} is available.
     *
     * @param what the feature, for the message ("KVM dirty rings")
     */
    public static void assume(Availability feature, String what) {
        if (feature.available()) {
            return;
        }
        if ("1".equals(System.getenv("FERRY_REQUIRE_KVM"))) {
            fail("FERRY_REQUIRE_KVM=1 but there is no usable " + what + ": " + feature.reason());
        }
        abort("skipped, no usable " + what + " here: " + feature.reason());
    }
}
