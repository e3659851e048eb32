package dev.ferry.kvm;

import dev.ferry.memory.linux.LinuxException;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;

/**
 * The thread and signal calls a vCPU kick needs (gettid, tgkill, pthread_sigmask, sigaction),
 * in the style of {@link dev.ferry.memory.linux.Linux}: errno captured, failures thrown as
 * {@link LinuxException}.
 */
final class LinuxThreads {

    /** SIGPIPE (asm-generic/signal.h). */
    static final int SIGPIPE = 13;

    private static final int SIG_UNBLOCK = 1;          // asm-generic/signal-defs.h
    private static final long SIG_DFL = 0;
    private static final long SIG_IGN = 1;
    private static final long SIGSET_BYTES = 128;       // glibc's sigset_t
    private static final long SIGACTION_BYTES = 152;    // glibc's struct sigaction on x86-64; handler at 0

    private static final Linker LINKER = Linker.nativeLinker();
    private static final StructLayout CAPTURE = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO = CAPTURE.varHandle(MemoryLayout.PathElement.groupElement("errno"));

    private static final MethodHandle GETTID = downcall("gettid", FunctionDescriptor.of(ValueLayout.JAVA_INT));
    private static final MethodHandle GETPID = downcall("getpid", FunctionDescriptor.of(ValueLayout.JAVA_INT));
    private static final MethodHandle TGKILL = downcall("tgkill",
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT));
    private static final MethodHandle PTHREAD_SIGMASK = downcall("pthread_sigmask",
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.ADDRESS));
    private static final MethodHandle SIGACTION = downcall("sigaction",
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.ADDRESS));

    private static final ThreadLocal<MemorySegment> ERRNO_BUFFER =
            ThreadLocal.withInitial(() -> Arena.global().allocate(CAPTURE));

    private LinuxThreads() {
    }

    private static MethodHandle downcall(String name, FunctionDescriptor descriptor) {
        MemorySegment symbol = LINKER.defaultLookup().find(name)
                .orElseThrow(() -> new UnsatisfiedLinkError("libc has no " + name));
        return LINKER.downcallHandle(symbol, descriptor, Linker.Option.captureCallState("errno"));
    }

    /** @return the calling thread's kernel thread id */
    static int gettid() {
        try {
            return (int) GETTID.invokeExact(ERRNO_BUFFER.get());
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
    }

    /** @return the process id */
    static int getpid() {
        try {
            return (int) GETPID.invokeExact(ERRNO_BUFFER.get());
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
    }

    /**
     * Sends {@code signal} to one thread of this process.
     *
     * @return false if the thread no longer exists (ESRCH)
     */
    static boolean tgkill(int tid, int signal) {
        MemorySegment err = ERRNO_BUFFER.get();
        int r;
        try {
            r = (int) TGKILL.invokeExact(err, getpid(), tid, signal);
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
        if (r < 0) {
            int errno = (int) ERRNO.get(err, 0L);
            if (errno == 3) { // ESRCH
                return false;
            }
            throw new LinuxException("tgkill(" + tid + ", " + signal + ")", errno);
        }
        return true;
    }

    /** Unblocks {@code signal} in the calling thread. */
    static void unblock(int signal) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment set = arena.allocate(SIGSET_BYTES, 8);
            set.set(ValueLayout.JAVA_LONG, 0, 1L << (signal - 1));
            // pthread_sigmask returns the error number rather than setting errno.
            int r = (int) PTHREAD_SIGMASK.invokeExact(ERRNO_BUFFER.get(), SIG_UNBLOCK, set, MemorySegment.NULL);
            if (r != 0) {
                throw new LinuxException("pthread_sigmask(SIG_UNBLOCK, " + signal + ")", r);
            }
        } catch (LinuxException e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
    }

    /**
     * @return whether {@code signal} has a handler installed (neither SIG_DFL nor SIG_IGN), so
     *         that sending it interrupts a blocking system call without killing the process
     */
    static boolean hasHandler(int signal) {
        MemorySegment err = ERRNO_BUFFER.get();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment old = arena.allocate(SIGACTION_BYTES, 8);
            int r = (int) SIGACTION.invokeExact(err, signal, MemorySegment.NULL, old);
            if (r < 0) {
                throw new LinuxException("sigaction(" + signal + ")", (int) ERRNO.get(err, 0L));
            }
            long handler = old.get(ValueLayout.JAVA_LONG, 0);
            return handler != SIG_DFL && handler != SIG_IGN;
        } catch (LinuxException e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
    }
}
