#!/usr/bin/env python3
"""A fake business app for the gateway's end-to-end tests: records every callback the
gateway delivers (plain JSON) and answers 200, or 500 while told to fail. Loopback only.

  fake_app.py --port P [--signing-secret whsec_...]
  POST <any path>   record the JSON body (and, with a signing secret, whether the Standard
                    Webhooks library verifies its signature headers); 200 (or 500 in mode "fail")
  POST /_mode       {"mode": "ok" | "fail"}
  GET  /_records    the bodies received, in order
"""
import argparse, json, threading
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

LOCK = threading.Lock()
RECORDS, MODE = [], {"mode": "ok"}
VERIFIER = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        with LOCK:
            self.answer(200, RECORDS)

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n)
        if self.path == "/_mode":
            MODE["mode"] = json.loads(raw)["mode"]
            return self.answer(200, MODE)
        if MODE["mode"] == "fail":
            return self.answer(500, {"error": "app failing"})
        rec = {"path": self.path, "body": json.loads(raw),
               "webhookId": self.headers.get("webhook-id")}
        if VERIFIER is not None:
            try:
                VERIFIER.verify(raw, {k.lower(): v for k, v in self.headers.items()})
                rec["verified"] = True
            except Exception as e:  # the library's WebhookVerificationError
                rec["verified"] = False
                rec["verifyError"] = str(e)
        with LOCK:
            RECORDS.append(rec)
        self.answer(200, {"ok": True})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--signing-secret")
    a = ap.parse_args()
    if a.signing_secret:
        from standardwebhooks.webhooks import Webhook
        global VERIFIER
        VERIFIER = Webhook(a.signing_secret)
    ThreadingHTTPServer.request_queue_size = 1024
    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    print(f"fake app on 127.0.0.1:{a.port}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
