package dev.ferry.migration.channel;

import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Objects;

/**
 * Where a migration goes or comes from, in QEMU's URI syntax: {@code tcp:HOST:PORT},
 * {@code unix:PATH}, {@code file:PATH}. (In-process pairs are made with
 * {@link Channels#inProcessPair()}; they need no address.)
 *
 * @param scheme the transport
 * @param target host:port for tcp, the path otherwise
 */
public record MigrationUri(Scheme scheme, String target) {

    /** The transports. */
    public enum Scheme { TCP, UNIX, FILE }

    public MigrationUri {
        Objects.requireNonNull(scheme);
        Objects.requireNonNull(target);
    }

    /**
     * @throws IllegalArgumentException with a one-line message naming the accepted forms
     */
    public static MigrationUri parse(String uri) {
        int colon = uri.indexOf(':');
        String forms = "use tcp:HOST:PORT, unix:PATH or file:PATH";
        if (colon <= 0 || colon == uri.length() - 1) {
            throw new IllegalArgumentException("'" + uri + "' is not a migration URI; " + forms);
        }
        String scheme = uri.substring(0, colon).toLowerCase(Locale.ROOT);
        String rest = uri.substring(colon + 1);
        return switch (scheme) {
            case "tcp" -> {
                MigrationUri u = new MigrationUri(Scheme.TCP, rest);
                u.socketAddress(); // validates
                yield u;
            }
            case "unix" -> new MigrationUri(Scheme.UNIX, rest);
            case "file" -> new MigrationUri(Scheme.FILE, rest);
            default -> throw new IllegalArgumentException("unknown migration transport '" + scheme + "'; " + forms);
        };
    }

    /** @return the socket address of a tcp URI */
    public InetSocketAddress socketAddress() {
        int colon = target.lastIndexOf(':');
        if (scheme != Scheme.TCP || colon <= 0) {
            throw new IllegalArgumentException("'tcp:" + target + "' needs a host and a port, e.g. tcp:127.0.0.1:4444");
        }
        String host = target.substring(0, colon);
        if (host.startsWith("[") && host.endsWith("]")) {
            host = host.substring(1, host.length() - 1);
        }
        try {
            int port = Integer.parseInt(target.substring(colon + 1));
            if (port < 0 || port > 65535) {
                throw new NumberFormatException();
            }
            return new InetSocketAddress(host, port);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("bad port in 'tcp:" + target + "': give 0 to 65535");
        }
    }

    /** @return the path of a unix or file URI */
    public Path path() {
        return Path.of(target);
    }

    @Override
    public String toString() {
        return scheme.name().toLowerCase(Locale.ROOT) + ":" + target;
    }
}
