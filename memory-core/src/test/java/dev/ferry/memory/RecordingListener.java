package dev.ferry.memory;

import dev.ferry.api.MemoryListener;
import dev.ferry.api.MemorySection;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * A listener that writes every callback it gets, as one line, into a log that several listeners
 * may share, so tests can check the order of calls across listeners. It syncs neither per section
 * nor globally; see {@link PerSection} and {@link Global}.
 */
class RecordingListener implements MemoryListener {

    final String name;
    final int priority;
    final List<String> log;

    RecordingListener(String name, int priority, List<String> log) {
        this.name = name;
        this.priority = priority;
        this.log = log;
    }

    RecordingListener(String name) {
        this(name, DEFAULT_PRIORITY, Collections.synchronizedList(new ArrayList<>()));
    }

    /** @return a section as the log shows it: {@code region@0xaddress+0xsize} */
    static String fmt(MemorySection s) {
        return s.region() + "@0x" + Long.toHexString(s.address()) + "+0x" + Long.toHexString(s.size());
    }

    void record(String event) {
        log.add(name + " " + event);
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public int priority() {
        return priority;
    }

    @Override
    public void begin() {
        record("begin");
    }

    @Override
    public void commit() {
        record("commit");
    }

    @Override
    public void regionAdd(MemorySection section) {
        record("add " + fmt(section));
    }

    @Override
    public void regionDel(MemorySection section) {
        record("del " + fmt(section));
    }

    @Override
    public void regionNop(MemorySection section) {
        record("nop " + fmt(section));
    }

    @Override
    public void logStart(MemorySection section, int oldMask, int newMask) {
        record("logStart " + fmt(section) + " " + oldMask + "->" + newMask);
    }

    @Override
    public void logStop(MemorySection section, int oldMask, int newMask) {
        record("logStop " + fmt(section) + " " + oldMask + "->" + newMask);
    }

    @Override
    public void logClear(MemorySection section, long offset, long length) {
        record("logClear " + fmt(section) + " 0x" + Long.toHexString(offset) + "+0x" + Long.toHexString(length));
    }

    @Override
    public void logGlobalStart() {
        record("logGlobalStart");
    }

    @Override
    public void logGlobalStop() {
        record("logGlobalStop");
    }

    @Override
    public void logGlobalAfterSync() {
        record("logGlobalAfterSync");
    }

    /** Syncs per section. */
    static class PerSection extends RecordingListener {
        PerSection(String name, int priority, List<String> log) {
            super(name, priority, log);
        }

        @Override
        public void logSync(MemorySection section) {
            record("logSync " + fmt(section));
        }
    }

    /** Syncs once for everything. */
    static class Global extends RecordingListener {
        Global(String name, int priority, List<String> log) {
            super(name, priority, log);
        }

        @Override
        public void logSyncGlobal(boolean lastStage) {
            record("logSyncGlobal " + lastStage);
        }
    }
}
