#!/usr/bin/env python3
"""A Python app behind the oneseal gateway, standard library only.

1. Sends a plain One API message to the gateway's app side (the gateway encrypts it and
   forwards it to the platform with your API key).
2. Receives the callbacks the gateway forwards (decrypted) and accepts only those whose
   Standard Webhooks signature verifies (`[gateway.callbacks] signing_secret_env`).

Environment: ONESEAL_APP_URL (http://127.0.0.1:8080), ONE_API_KEY, ONESEAL_SIGNING_SECRET
(whsec_…, the gateway's value), LISTEN_PORT (9000: forward_to =
"http://127.0.0.1:9000/whatsapp/callbacks"), ONCE=1 to stop after one verified callback.
"""
import base64, hashlib, hmac, json, os, sys, time, urllib.error, urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

APP_URL = os.environ.get("ONESEAL_APP_URL", "http://127.0.0.1:8080").rstrip("/")
SECRET = base64.b64decode(os.environ["ONESEAL_SIGNING_SECRET"].removeprefix("whsec_"))
TOLERANCE = 300  # seconds between the signature's timestamp and now


def send(to, text):
    body = json.dumps({"messages": [{"channel": "whatsapp", "to": to, "content": text}]}).encode()
    req = urllib.request.Request(f"{APP_URL}/v1/message", data=body, method="POST", headers={
        "Content-Type": "application/json", "Authorization": os.environ.get("ONE_API_KEY", "")})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:  # the gateway's (or the platform's) JSON error
        return e.code, json.loads(e.read() or b"{}")


def verified(headers, body):
    """Standard Webhooks: v1 = base64(HMAC-SHA256(secret, id.timestamp.body)), recent."""
    wid, ts, sigs = (headers.get(h, "") for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (wid and ts.isdigit()) or abs(time.time() - int(ts)) > TOLERANCE:
        return False
    mac = hmac.new(SECRET, f"{wid}.{ts}.".encode() + body, hashlib.sha256).digest()
    want = base64.b64encode(mac).decode()
    return any(s.startswith("v1,") and hmac.compare_digest(s[3:], want) for s in sigs.split())


class Callbacks(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not verified(self.headers, body):
            print("refused: the signature does not verify", flush=True)
            self.send_response(401); self.end_headers(); return
        print(f"callback {self.headers['webhook-id']}: {json.dumps(json.loads(body))}", flush=True)
        self.send_response(200); self.end_headers()
        if os.environ.get("ONCE") == "1":
            self.server.done = True

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    status, answer = send("2799900001", "Your one-time PIN is 482913")
    print(f"sent: {status} {json.dumps(answer)}", flush=True)
    if status >= 300:
        sys.exit(1)
    server = HTTPServer(("127.0.0.1", int(os.environ.get("LISTEN_PORT", "9000"))), Callbacks)
    server.done = False
    print(f"listening on {server.server_address[1]}", flush=True)
    while not server.done:
        server.handle_request()
