package dev.ferry.vhost;

/** Device {@code vhost-blk}: virtio-blk whose queues are served by one vhost dev. */
public final class VhostBlkProvider extends VhostProvider {

    public VhostBlkProvider() {
        super(VhostDevice.Kind.BLK);
    }

    @Override
    public String description() {
        return "virtio-blk with a vhost-user backend: one vhost dev for all queues, reading blocks into guest RAM by "
                + "DMA and logging them in the shared vhost log " + OPTIONS;
    }
}
