// A Node.js app behind the oneseal gateway, no dependencies (Node 18+).
//
// 1. Sends a plain One API message to the gateway's app side (the gateway encrypts it and
//    forwards it to the platform with your API key).
// 2. Receives the callbacks the gateway forwards (decrypted) and accepts only those whose
//    Standard Webhooks signature verifies ([gateway.callbacks] signing_secret_env).
//
// Environment: ONESEAL_APP_URL (http://127.0.0.1:8080), ONE_API_KEY, ONESEAL_SIGNING_SECRET
// (whsec_…), LISTEN_PORT (9000), ONCE=1 to stop after one verified callback.
import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";

const APP_URL = (process.env.ONESEAL_APP_URL ?? "http://127.0.0.1:8080").replace(/\/$/, "");
const SECRET = Buffer.from(process.env.ONESEAL_SIGNING_SECRET.replace(/^whsec_/, ""), "base64");
const TOLERANCE = 300; // seconds between the signature's timestamp and now

async function send(to, text) {
  const r = await fetch(`${APP_URL}/v1/message`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: process.env.ONE_API_KEY ?? "" },
    body: JSON.stringify({ messages: [{ channel: "whatsapp", to, content: text }] }),
  });
  return [r.status, await r.json()];
}

// Standard Webhooks: v1 = base64(HMAC-SHA256(secret, id.timestamp.body)), recent.
function verified(headers, body) {
  const id = headers["webhook-id"], ts = headers["webhook-timestamp"] ?? "";
  const sigs = (headers["webhook-signature"] ?? "").split(" ");
  if (!id || !/^\d+$/.test(ts) || Math.abs(Date.now() / 1000 - Number(ts)) > TOLERANCE) return false;
  const want = createHmac("sha256", SECRET).update(`${id}.${ts}.`).update(body).digest();
  return sigs.some((s) => {
    if (!s.startsWith("v1,")) return false;
    const got = Buffer.from(s.slice(3), "base64");
    return got.length === want.length && timingSafeEqual(got, want);
  });
}

const [status, answer] = await send("2799900001", "Your one-time PIN is 482913");
console.log(`sent: ${status} ${JSON.stringify(answer)}`);
if (status >= 300) process.exit(1);

const server = createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    if (req.method !== "POST" || !verified(req.headers, body)) {
      console.log("refused: the signature does not verify");
      res.writeHead(401).end();
      return;
    }
    console.log(`callback ${req.headers["webhook-id"]}: ${JSON.stringify(JSON.parse(body))}`);
    res.writeHead(200).end(() => {
      if (process.env.ONCE === "1") {
        server.close();
        server.closeAllConnections(); // the gateway keeps its connection alive
      }
    });
  });
});
server.listen(Number(process.env.LISTEN_PORT ?? 9000), "127.0.0.1", () =>
  console.log(`listening on ${server.address().port}`));
