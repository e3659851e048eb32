package dev.ferry.migration.channel;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.FileChannel;
import java.nio.channels.Pipe;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.channels.WritableByteChannel;
import java.nio.file.Files;
import java.nio.file.StandardOpenOption;
import java.util.Optional;

/** Opens migration connections for each transport. */
public final class Channels {

    private Channels() {
    }

    /**
     * The source's end: connects (tcp, unix) or creates the file (file).
     *
     * @throws IOException with the URI in the message if it cannot be reached
     */
    public static Connection connect(MigrationUri uri) throws IOException {
        try {
            return switch (uri.scheme()) {
                case TCP -> {
                    SocketChannel s = SocketChannel.open();
                    tune(s);
                    s.connect(uri.socketAddress());
                    yield socket(uri.toString(), s);
                }
                case UNIX -> socket(uri.toString(),
                        SocketChannel.open(UnixDomainSocketAddress.of(uri.path())));
                case FILE -> {
                    FileChannel f = FileChannel.open(uri.path(), StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                            StandardOpenOption.TRUNCATE_EXISTING);
                    yield file(uri.toString(), f, null);
                }
            };
        } catch (IOException e) {
            throw new IOException("cannot open " + uri + ": " + describe(e), e);
        }
    }

    /**
     * The destination's end: listens (tcp, unix) or opens the file to read it.
     *
     * @throws IOException with the URI in the message if it cannot be opened
     */
    public static Listener listen(MigrationUri uri) throws IOException {
        try {
            return switch (uri.scheme()) {
                case TCP -> {
                    ServerSocketChannel server = ServerSocketChannel.open();
                    // Accepted sockets inherit it; it must be set before the handshake.
                    server.setOption(java.net.StandardSocketOptions.SO_RCVBUF, SOCKET_BUFFER);
                    server.bind(uri.socketAddress());
                    yield new SocketListener(server, "tcp:" + server.socket().getInetAddress().getHostAddress() + ":"
                            + server.socket().getLocalPort(), false, uri);
                }
                case UNIX -> {
                    Files.deleteIfExists(uri.path());
                    ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
                    server.bind(UnixDomainSocketAddress.of(uri.path()));
                    yield new SocketListener(server, uri.toString(), true, uri);
                }
                case FILE -> {
                    FileChannel f = FileChannel.open(uri.path(), StandardOpenOption.READ);
                    yield new Listener() {
                        private boolean taken;

                        @Override
                        public String address() {
                            return uri.toString();
                        }

                        @Override
                        public Connection accept() throws IOException {
                            if (taken) {
                                throw new IOException(uri + " has been read already");
                            }
                            taken = true;
                            return file(uri.toString(), null, f);
                        }

                        @Override
                        public boolean repeatable() {
                            return false;
                        }

                        @Override
                        public void close() throws IOException {
                            f.close();
                        }
                    };
                }
            };
        } catch (IOException e) {
            throw new IOException("cannot open " + uri + ": " + describe(e), e);
        }
    }

    /** @return a connected source and destination in this process, over two pipes */
    public static Connection[] inProcessPair() throws IOException {
        Pipe stream = Pipe.open();
        Pipe back = Pipe.open();
        Connection source = new Ends("in-process (source)", stream.sink(), null, null, back.source(), () -> {
            stream.sink().close();
            back.source().close();
        });
        Connection destination = new Ends("in-process (destination)", null, stream.source(), back.sink(), null, () -> {
            stream.source().close();
            back.sink().close();
        });
        return new Connection[]{source, destination};
    }

    /** Socket buffers: a few milliseconds of stream at GiB/s, so neither side waits on the other. */
    private static final int SOCKET_BUFFER = 8 << 20;

    private static void tune(SocketChannel s) throws IOException {
        s.setOption(java.net.StandardSocketOptions.TCP_NODELAY, true);
        s.setOption(java.net.StandardSocketOptions.SO_SNDBUF, SOCKET_BUFFER);
        s.setOption(java.net.StandardSocketOptions.SO_RCVBUF, SOCKET_BUFFER);
    }

    static String describe(IOException e) {
        return switch (e) {
            case java.nio.file.NoSuchFileException n -> "no such file or directory";
            case java.nio.file.AccessDeniedException a -> "permission denied";
            case java.net.ConnectException c -> "connection refused (is a destination listening there?)";
            default -> e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
        };
    }

    /** Accepts incoming connections. */
    public interface Listener extends AutoCloseable {

        /** @return the address actually bound (a tcp port of 0 becomes the real port) */
        String address();

        /** Waits for the next source. */
        Connection accept() throws IOException;

        /** @return whether {@link #accept()} can be called again for another attempt */
        boolean repeatable();

        @Override
        void close() throws IOException;
    }

    private record SocketListener(ServerSocketChannel server, String address, boolean unix, MigrationUri uri)
            implements Listener {
        @Override
        public Connection accept() throws IOException {
            SocketChannel s = server.accept();
            if (!unix) {
                tune(s);
            }
            return socket(address, s);
        }

        @Override
        public boolean repeatable() {
            return true;
        }

        @Override
        public void close() throws IOException {
            server.close();
            if (unix) {
                Files.deleteIfExists(uri.path());
            }
        }
    }

    /** A socket carries the stream one way and the return path the other. */
    private static Connection socket(String description, SocketChannel s) {
        return new Ends(description, s, s, s, s, s::close);
    }

    /** A file carries only the stream; the writer forces it to disk before closing. */
    private static Connection file(String description, FileChannel out, FileChannel in) {
        return new Ends(description, out, in, null, null, () -> {
            // Closing twice does nothing (Closeable's contract): the source closes a file
            // itself once it is complete, and callers close their connection again.
            if (out != null && out.isOpen()) {
                out.force(false);
                out.close();
            }
            if (in != null) {
                in.close();
            }
        });
    }

    /** What closes a connection's channels. */
    private interface Closer {
        void close() throws IOException;
    }

    /** One end of a migration: whichever channels the transport gives it, null for the others. */
    private record Ends(String description, WritableByteChannel out, ReadableByteChannel in,
                        WritableByteChannel rpOut, ReadableByteChannel rpIn, Closer closer) implements Connection {
        @Override
        public WritableByteChannel streamOut() {
            return out;
        }

        @Override
        public ReadableByteChannel streamIn() {
            return in;
        }

        @Override
        public Optional<WritableByteChannel> returnOut() {
            return Optional.ofNullable(rpOut);
        }

        @Override
        public Optional<ReadableByteChannel> returnIn() {
            return Optional.ofNullable(rpIn);
        }

        @Override
        public void close() throws IOException {
            closer.close();
        }
    }
}
