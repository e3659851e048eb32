package dev.ferry.migration.channel;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.FileChannel;
import java.nio.channels.GatheringByteChannel;
import java.nio.channels.Pipe;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
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
                    yield new SocketConnection(uri.toString(), s);
                }
                case UNIX -> new SocketConnection(uri.toString(),
                        SocketChannel.open(UnixDomainSocketAddress.of(uri.path())));
                case FILE -> {
                    FileChannel f = FileChannel.open(uri.path(), StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                            StandardOpenOption.TRUNCATE_EXISTING);
                    yield new FileConnection(uri.toString(), f, null);
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
                            return new FileConnection(uri.toString(), null, f);
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
        Connection source = new PipeConnection("in-process (source)", stream.sink(), null, null, back.source());
        Connection destination = new PipeConnection("in-process (destination)", null, stream.source(), back.sink(), null);
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
            return new SocketConnection(address, s);
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

    private record SocketConnection(String description, SocketChannel socket) implements Connection {
        @Override
        public GatheringByteChannel streamOut() {
            return socket;
        }

        @Override
        public ReadableByteChannel streamIn() {
            return socket;
        }

        @Override
        public Optional<GatheringByteChannel> returnOut() {
            return Optional.of(socket);
        }

        @Override
        public Optional<ReadableByteChannel> returnIn() {
            return Optional.of(socket);
        }

        @Override
        public void close() throws IOException {
            socket.close();
        }
    }

    private record FileConnection(String description, FileChannel out, FileChannel in) implements Connection {
        @Override
        public GatheringByteChannel streamOut() {
            return out;
        }

        @Override
        public ReadableByteChannel streamIn() {
            return in;
        }

        @Override
        public Optional<GatheringByteChannel> returnOut() {
            return Optional.empty();
        }

        @Override
        public Optional<ReadableByteChannel> returnIn() {
            return Optional.empty();
        }

        @Override
        public void close() throws IOException {
            // Closing twice does nothing (Closeable's contract): the source closes a file itself
            // once it is complete, and callers close their connection again.
            if (out != null && out.isOpen()) {
                out.force(false);
                out.close();
            }
            if (in != null) {
                in.close();
            }
        }
    }

    private record PipeConnection(String description, Pipe.SinkChannel out, Pipe.SourceChannel in,
                                  Pipe.SinkChannel rpOut, Pipe.SourceChannel rpIn) implements Connection {
        @Override
        public GatheringByteChannel streamOut() {
            return out;
        }

        @Override
        public ReadableByteChannel streamIn() {
            return in;
        }

        @Override
        public Optional<GatheringByteChannel> returnOut() {
            return Optional.ofNullable(rpOut);
        }

        @Override
        public Optional<ReadableByteChannel> returnIn() {
            return Optional.ofNullable(rpIn);
        }

        @Override
        public void close() throws IOException {
            for (var c : new java.nio.channels.Channel[]{out, in, rpOut, rpIn}) {
                if (c != null) {
                    c.close();
                }
            }
        }
    }
}
