#!/usr/bin/env python3
"""A fake WhatsApp Flows handler (the business's flow logic) for the gateway's tests: plain
JSON in, plain JSON out. Records every request. What it answers depends on the flow_token:

  "expired"  -> 427          "crash" -> 500 with a body that must never reach the client
  "notjson"  -> 200 "hello"  "slow"  -> answers after 5 s
  an error notification (data.error) -> 200 with no body
  anything else -> 200 {"screen": "NEXT", "data": {"got_action": action, "echo": data}}

  fake_flow_app.py --port P      GET /_records -> [{"path", "body"}]
"""
import argparse, json, threading, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

LOCK = threading.Lock()
RECORDS = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, code, data=b"", ctype="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        with LOCK:
            self.reply(200, json.dumps(RECORDS).encode())

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with LOCK:
            RECORDS.append({"path": self.path, "body": raw.decode("utf-8")})
        flow = json.loads(raw)
        token = flow.get("flow_token")
        if token == "expired":
            return self.reply(427, b'{"error":"flow token expired"}')
        if token == "crash":
            return self.reply(500, b'{"secret":"APP-INTERNAL-DETAIL"}')
        if token == "notjson":
            return self.reply(200, b"hello", "text/plain")
        if token == "slow":
            time.sleep(5)
        if isinstance(flow.get("data"), dict) and flow["data"].get("error"):
            return self.reply(200)
        answer = {"screen": "NEXT", "data": {"got_action": flow.get("action"), "echo": flow.get("data")}}
        self.reply(200, json.dumps(answer, ensure_ascii=False).encode("utf-8"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    print(f"fake flow app on 127.0.0.1:{a.port}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
