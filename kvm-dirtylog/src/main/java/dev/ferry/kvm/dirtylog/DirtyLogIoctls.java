package dev.ferry.kvm.dirtylog;

import dev.ferry.kvm.KvmVm;

import java.lang.foreign.MemorySegment;

/**
 * The two dirty-log ioctls the tracker issues, so that its bookkeeping can be checked against a
 * model of the kernel where there is no KVM. In production they are {@link KvmVm}'s.
 */
public interface DirtyLogIoctls {

    /** KVM_GET_DIRTY_LOG: copies slot {@code slot}'s log into {@code bitmap} (bit n = page n of the slot). */
    void getDirtyLog(int slot, MemorySegment bitmap);

    /**
     * KVM_CLEAR_DIRTY_LOG: clears, and write-protects again, the pages of slot {@code slot} whose
     * bits are set in {@code bitmap} (bit n = page {@code firstPage + n}).
     */
    void clearDirtyLog(int slot, long firstPage, int numPages, MemorySegment bitmap);

    /** @return the ioctls of a real VM */
    static DirtyLogIoctls of(KvmVm vm) {
        return new DirtyLogIoctls() {
            @Override
            public void getDirtyLog(int slot, MemorySegment bitmap) {
                vm.getDirtyLog(slot, bitmap);
            }

            @Override
            public void clearDirtyLog(int slot, long firstPage, int numPages, MemorySegment bitmap) {
                vm.clearDirtyLog(slot, firstPage, numPages, bitmap);
            }
        };
    }
}
