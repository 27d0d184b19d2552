#!/usr/bin/env python3
"""A fake CleverTap (its DLR and incoming-message receivers) and a fake media host, for the
CleverTap bridge's end-to-end tests. Written independently of oneseal. Loopback only.

  fake_clevertap.py --port P
  POST /dlr, /imo        record the JSON body; 200 (500 while in mode "fail")
  GET  /media/<name>     a deterministic file for <name> (content type from its extension),
                         answered after 0.3 s (so concurrent sends overlap the fetch);
                         every fetch is counted
  GET  /_file/<name>     the same bytes, not counted (what the tests compare with)
  GET  /_records         {"callbacks": [{"path", "body"}], "fetches": {name: count}}
  POST /_mode            {"mode": "ok" | "fail"}
"""
import argparse, hashlib, json, threading, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

LOCK = threading.Lock()
CALLBACKS, FETCHES, MODE = [], {}, {"mode": "ok"}
TYPES = {"jpg": "image/jpeg", "png": "image/png", "mp4": "video/mp4", "mp3": "audio/mpeg", "pdf": "application/pdf"}


def content(name):
    seed = hashlib.sha256(name.encode()).digest()
    out, block = bytearray(), seed
    while len(out) < 150_000 + len(name):
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[: 150_000 + len(name)])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, code, data, ctype="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/_records":
            with LOCK:
                return self.reply(200, json.dumps({"callbacks": CALLBACKS, "fetches": FETCHES}).encode())
        for prefix, counted in (("/media/", True), ("/_file/", False)):
            if self.path.startswith(prefix):
                name = self.path[len(prefix):]
                if counted:
                    with LOCK:
                        FETCHES[name] = FETCHES.get(name, 0) + 1
                    time.sleep(0.3)
                if name.startswith("missing"):
                    return self.reply(404, b"{}")
                ext = name.rsplit(".", 1)[-1]
                return self.reply(200, content(name), TYPES.get(ext, "application/octet-stream"))
        self.reply(404, b"{}")

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/_mode":
            MODE["mode"] = json.loads(raw)["mode"]
            return self.reply(200, b"{}")
        if MODE["mode"] == "fail":
            return self.reply(500, b'{"error":"clevertap failing"}')
        with LOCK:
            CALLBACKS.append({"path": self.path, "body": json.loads(raw)})
        self.reply(200, b'{"status":"success"}')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    ThreadingHTTPServer.request_queue_size = 1024
    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    print(f"fake clevertap on 127.0.0.1:{a.port}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
