// A Java app behind the oneseal gateway, JDK only (Java 17+; run: java OnesealClient.java).
//
// 1. Sends a plain One API message to the gateway's app side (the gateway encrypts it and
//    forwards it to the platform with your API key).
// 2. Receives the callbacks the gateway forwards (decrypted) and accepts only those whose
//    Standard Webhooks signature verifies ([gateway.callbacks] signing_secret_env).
//
// Environment: ONESEAL_APP_URL (http://127.0.0.1:8080), ONE_API_KEY, ONESEAL_SIGNING_SECRET
// (whsec_…), LISTEN_PORT (9000), ONCE=1 to stop after one verified callback.
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.Base64;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

public class OnesealClient {
    static final Map<String, String> ENV = System.getenv();
    static final String APP_URL = ENV.getOrDefault("ONESEAL_APP_URL", "http://127.0.0.1:8080").replaceAll("/$", "");
    static final byte[] SECRET = Base64.getDecoder().decode(ENV.get("ONESEAL_SIGNING_SECRET").replaceFirst("^whsec_", ""));
    static final long TOLERANCE = 300; // seconds between the signature's timestamp and now

    public static void main(String[] args) throws Exception {
        String message = "{\"messages\":[{\"channel\":\"whatsapp\",\"to\":\"2799900001\",\"content\":\"Your one-time PIN is 482913\"}]}";
        HttpResponse<String> r = HttpClient.newHttpClient().send(
            HttpRequest.newBuilder(URI.create(APP_URL + "/v1/message"))
                .timeout(Duration.ofSeconds(30))
                .header("Content-Type", "application/json")
                .header("Authorization", ENV.getOrDefault("ONE_API_KEY", ""))
                .POST(HttpRequest.BodyPublishers.ofString(message))
                .build(),
            HttpResponse.BodyHandlers.ofString());
        System.out.println("sent: " + r.statusCode() + " " + r.body());
        if (r.statusCode() >= 300) System.exit(1);

        CountDownLatch done = new CountDownLatch(1);
        HttpServer server = HttpServer.create(
            new InetSocketAddress("127.0.0.1", Integer.parseInt(ENV.getOrDefault("LISTEN_PORT", "9000"))), 0);
        server.createContext("/", ex -> {
            byte[] body = ex.getRequestBody().readAllBytes();
            boolean ok = "POST".equals(ex.getRequestMethod()) && verified(ex, body);
            if (ok) {
                System.out.println("callback " + ex.getRequestHeaders().getFirst("webhook-id") + ": "
                    + new String(body, StandardCharsets.UTF_8));
            } else {
                System.out.println("refused: the signature does not verify");
            }
            ex.sendResponseHeaders(ok ? 200 : 401, -1);
            ex.close();
            if (ok && "1".equals(ENV.get("ONCE"))) done.countDown();
        });
        server.start();
        System.out.println("listening on " + server.getAddress().getPort());
        done.await();
        server.stop(0);
    }

    // Standard Webhooks: v1 = base64(HMAC-SHA256(secret, id.timestamp.body)), recent.
    static boolean verified(HttpExchange ex, byte[] body) {
        String id = ex.getRequestHeaders().getFirst("webhook-id");
        String ts = ex.getRequestHeaders().getFirst("webhook-timestamp");
        String sigs = ex.getRequestHeaders().getFirst("webhook-signature");
        if (id == null || ts == null || sigs == null || !ts.matches("\\d{1,12}")) return false;
        if (Math.abs(System.currentTimeMillis() / 1000 - Long.parseLong(ts)) > TOLERANCE) return false;
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(SECRET, "HmacSHA256"));
            mac.update((id + "." + ts + ".").getBytes(StandardCharsets.UTF_8));
            byte[] want = mac.doFinal(body);
            for (String s : sigs.split(" ")) {
                if (!s.startsWith("v1,")) continue;
                byte[] got;
                try {
                    got = Base64.getDecoder().decode(s.substring(3));
                } catch (IllegalArgumentException e) {
                    continue;
                }
                if (MessageDigest.isEqual(got, want)) return true; // constant time
            }
        } catch (Exception e) {
            return false;
        }
        return false;
    }
}
