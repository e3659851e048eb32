package dev.ferry.vhost;

/** Device {@code vhost-net}: virtio-net whose queue pairs are served by vhost devs. */
public final class VhostNetProvider extends VhostProvider {

    public VhostNetProvider() {
        super(VhostDevice.Kind.NET);
    }

    @Override
    public String description() {
        return "virtio-net with a vhost backend: one vhost dev per queue pair, writing received packets into guest "
                + "RAM by DMA and logging them in the shared vhost log " + OPTIONS;
    }
}
