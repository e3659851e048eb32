package dev.ferry.migration.channel;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** QEMU's migration URI forms, and one-line messages for the rest. */
class MigrationUriTest {

    @Test
    void parsesTheThreeTransports() {
        MigrationUri tcp = MigrationUri.parse("tcp:127.0.0.1:4444");
        assertEquals(MigrationUri.Scheme.TCP, tcp.scheme());
        assertEquals(new InetSocketAddress("127.0.0.1", 4444), tcp.socketAddress());
        assertEquals("tcp:127.0.0.1:4444", tcp.toString());
        assertEquals(new InetSocketAddress("::1", 5), MigrationUri.parse("tcp:[::1]:5").socketAddress());
        assertEquals(0, MigrationUri.parse("TCP:localhost:0").socketAddress().getPort());
        MigrationUri unix = MigrationUri.parse("unix:/tmp/x.sock");
        assertEquals(Path.of("/tmp/x.sock"), unix.path());
        assertEquals("unix:/tmp/x.sock", unix.toString());
        MigrationUri file = MigrationUri.parse("file:/tmp/a:b");
        assertEquals(Path.of("/tmp/a:b"), file.path());
        assertEquals(file, MigrationUri.parse(file.toString()));
    }

    @Test
    void refusesWithOneLine() {
        for (String bad : new String[]{"", "tcp", "tcp:", ":x", "nonsense", "ftp:host:1", "tcp:host",
                "tcp:host:99999", "tcp:host:-1", "tcp:host:port", "tcp::4444"}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> MigrationUri.parse(bad), bad);
            assertTrue(!e.getMessage().contains("\n") && !e.getMessage().isBlank(), e.getMessage());
        }
        assertTrue(assertThrows(IllegalArgumentException.class, () -> MigrationUri.parse("ftp:x")).getMessage()
                .contains("unknown migration transport 'ftp'"));
        assertThrows(IllegalArgumentException.class, () -> MigrationUri.parse("unix:/x").socketAddress());
    }

    @Test
    void connectingNowhereSaysWhere() throws Exception {
        int port;
        try (ServerSocket s = new ServerSocket(0)) {
            port = s.getLocalPort();
        }
        String uri = "tcp:127.0.0.1:" + port;
        IOException e = assertThrows(IOException.class, () -> Channels.connect(MigrationUri.parse(uri)));
        assertTrue(e.getMessage().startsWith("cannot open " + uri + ": "), e.getMessage());
        IOException f = assertThrows(IOException.class,
                () -> Channels.listen(MigrationUri.parse("file:/nonexistent/dir/x.mig")));
        assertTrue(f.getMessage().contains("file:/nonexistent/dir/x.mig"), f.getMessage());
    }
}
