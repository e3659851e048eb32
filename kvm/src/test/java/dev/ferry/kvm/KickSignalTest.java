package dev.ferry.kvm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ferry.memory.linux.Errno;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import org.junit.jupiter.api.Test;

/**
 * The vCPU kick without KVM: SIGPIPE sent with tgkill to a Java thread blocked in a system call
 * interrupts the call with EINTR (as it interrupts KVM_RUN) and the JVM carries on.
 */
class KickSignalTest {

    private static final StructLayout CAPTURE = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO = CAPTURE.varHandle(MemoryLayout.PathElement.groupElement("errno"));
    // int poll(struct pollfd *fds, nfds_t nfds, int timeout): with no fds, a sleep only a signal ends early.
    private static final MethodHandle POLL = Linker.nativeLinker().downcallHandle(
            Linker.nativeLinker().defaultLookup().find("poll").orElseThrow(),
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT),
            Linker.Option.captureCallState("errno"));

    @Test
    void theJvmHandlesSigpipeSoItIsSafeToSend() {
        assertTrue(LinuxThreads.hasHandler(LinuxThreads.SIGPIPE), "HotSpot installs a SIGPIPE handler");
    }

    @Test
    void sigpipeInterruptsABlockingCallOfAJavaThread() throws Exception {
        AtomicInteger tid = new AtomicInteger();
        CompletableFuture<long[]> result = new CompletableFuture<>();
        Thread sleeper = Thread.ofPlatform().name("kick-target").start(() -> {
            LinuxThreads.unblock(LinuxThreads.SIGPIPE);
            tid.set(LinuxThreads.gettid());
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment errno = arena.allocate(CAPTURE);
                long start = System.nanoTime();
                int r = (int) POLL.invokeExact(errno, MemorySegment.NULL, 0L, 20_000);
                result.complete(new long[]{r, (int) ERRNO.get(errno, 0L), System.nanoTime() - start});
            } catch (Throwable t) {
                result.completeExceptionally(t);
            }
        });
        while (tid.get() == 0) {
            Thread.onSpinWait();
        }
        // Keep signalling until the thread is inside poll (a signal before that is simply handled).
        long[] r = null;
        for (int i = 0; i < 200 && r == null; i++) {
            assertTrue(LinuxThreads.tgkill(tid.get(), LinuxThreads.SIGPIPE));
            try {
                r = result.get(50, TimeUnit.MILLISECONDS);
            } catch (java.util.concurrent.TimeoutException e) {
                // not yet
            }
        }
        sleeper.join(5_000);
        assertTrue(r != null, "poll was not interrupted");
        assertEquals(-1, r[0], "poll returns -1 when a signal interrupts it");
        assertEquals(Errno.EINTR, r[1]);
        assertTrue(r[2] < TimeUnit.SECONDS.toNanos(10), "interrupted early");
    }

    @Test
    void immediateExitByteSupportsVolatileAccessInNativeMemory() {
        VarHandle handle = ValueLayout.JAVA_BYTE.varHandle();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment run = arena.allocate(KvmStructs.KVM_RUN);
            handle.setVolatile(run, 1L, (byte) 1);
            assertEquals((byte) 1, (byte) handle.getVolatile(run, 1L));
        }
    }
}
