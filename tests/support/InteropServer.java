// A minimal JSSE (Java's own TLS stack) server for certloop's interoperability tests.
// Compiled with the installed JDK at test time (tests/support/interop.py), never shipped.
//
//   java -cp DIR InteropServer PORT KEYSTORE.p12 PASSWORD PROTOCOL NEED_CLIENT_AUTH
//
// Listens on 127.0.0.1:PORT, presents the key and chain of the PKCS#12 keystore, speaks only
// PROTOCOL (e.g. TLSv1.2) and, when NEED_CLIENT_AUTH is "true", refuses clients without a
// certificate (setNeedClientAuth). Each connection: handshake, then close.

import java.io.FileInputStream;
import java.net.InetAddress;
import java.net.Socket;
import java.security.KeyStore;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLServerSocket;
import javax.net.ssl.SSLSocket;

public final class InteropServer {
    public static void main(String[] args) throws Exception {
        int port = Integer.parseInt(args[0]);
        char[] password = args[2].toCharArray();
        KeyStore store = KeyStore.getInstance("PKCS12");
        try (FileInputStream in = new FileInputStream(args[1])) {
            store.load(in, password);
        }
        KeyManagerFactory keys = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        keys.init(store, password);
        SSLContext context = SSLContext.getInstance("TLS");
        context.init(keys.getKeyManagers(), null, null);
        SSLServerSocket server = (SSLServerSocket) context.getServerSocketFactory()
            .createServerSocket(port, 50, InetAddress.getByName("127.0.0.1"));
        server.setEnabledProtocols(new String[] {args[3]});
        server.setNeedClientAuth(Boolean.parseBoolean(args[4]));
        System.out.println("listening on 127.0.0.1:" + port);
        System.out.flush();
        while (true) {
            Socket accepted = server.accept();
            Thread worker = new Thread(() -> serve((SSLSocket) accepted));
            worker.setDaemon(true);
            worker.start();
        }
    }

    private static void serve(SSLSocket socket) {
        try (socket) {
            socket.setSoTimeout(10_000);
            socket.startHandshake();
        } catch (Exception refused) {
            System.out.println("handshake ended: " + refused);
        }
    }
}
