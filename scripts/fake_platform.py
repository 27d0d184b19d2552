#!/usr/bin/env python3
"""A fake Clickatell One API platform for the gateway's end-to-end tests, written
independently of oneseal (Python `cryptography` + boto3, through scripts/interop.py's
independent implementation of the wire format). It listens on loopback only.

  fake_platform.py --port P (--local-key F | --kms-endpoint URL [--kms-key-id ID])

  POST /v1/message, /wa/messages  decrypts every policy leaf with the message's data key
                                  (KMS or local) and records the plaintext; answers 202
  POST /v1/media?...              decrypts the uploaded file with the query's encryptionKey,
                                  checks sha256FileHash, records (with the fileId it answers);
                                  answers {"fileId": ...}
  GET  /v1/media?fileId=F         serves a file stored with POST /_files
  POST /_files                    {"fileId", "contentType", "data": base64 of the stored bytes}
  POST /_seal                     {"plain": doc, "suite"} -> the doc encrypted as the platform
                                  would (data key from KMS or local), for callbacks
  POST /_mode                     {"mode": "ok" | "fail" | "hang" | "drop" | "fast" | "close" |
                                  "silent-close"}: "close" answers messages with Connection:
                                  close and closes; "silent-close" closes after answering without
                                  saying so (as a server's keep-alive timeout does)
  GET  /_records                  everything received, decrypted
"""
import argparse, base64, hashlib, json, os, resource, sys, threading, time, copy
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
from urllib.parse import urlsplit, parse_qs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop  # noqa: E402  (the independent implementation)

LOCK = threading.Lock()
RECORDS, FILES, MODE = [], {}, {"mode": "ok"}
PROV = None
UNWRAPPED = {}


def unwrap(blob_b64):
    with LOCK:
        if blob_b64 in UNWRAPPED:
            return UNWRAPPED[blob_b64]
    k = PROV.unwrap(base64.b64decode(blob_b64))
    with LOCK:
        UNWRAPPED[blob_b64] = k
    return k


def open_doc(doc):
    """Decrypts every policy leaf of an encrypted request in place (raises if one fails)."""
    k = interop.kind(doc)
    top = doc.get("encryptionKey")
    for m, p in list(interop.items(doc, k)):
        blob = m.get("encryptionKey") or top
        if not blob:
            raise ValueError(f"{p}: no encryptionKey")
        key = unwrap(blob)
        text, binary, hashp = interop.item_leaves(m, p, k)
        for ptr in text:
            pt, _ = interop.open_auto(key, base64.b64decode(interop.ptr_get(doc, ptr)))
            interop.ptr_set(doc, ptr, pt.decode("utf-8"))
        if binary:
            pt, _ = interop.open_auto(key, base64.b64decode(interop.ptr_get(doc, binary)))
            if hashlib.sha256(pt).hexdigest() != interop.ptr_get(doc, hashp):
                raise ValueError(f"{binary}: sha256 mismatch")
            interop.ptr_set(doc, binary, base64.b64encode(pt).decode())
        m.pop("encryptionKey", None)
    doc.pop("encryptionKey", None)
    return doc


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def answer(self, code, obj=None, raw=None, ctype="application/json", close=None):
        data = raw if raw is not None else json.dumps(obj).encode()
        self.send_response(code)
        if close:
            self.close_connection = True
            if close == "close":
                self.send_header("Connection", "close")
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def misbehave(self):
        mode = MODE["mode"]
        if mode == "hang":
            time.sleep(120)
            return True
        if mode == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return True
        if mode == "fail":
            self.answer(503, {"error": {"code": 503, "description": "platform unavailable"}})
            return True
        return False

    def do_GET(self):
        u = urlsplit(self.path)
        if u.path == "/_records":
            with LOCK:
                return self.answer(200, RECORDS)
        if u.path == "/v1/media":
            q = parse_qs(u.query)
            with LOCK:
                RECORDS.append({"path": "GET /v1/media", "query": {k: v[0] for k, v in q.items()},
                                "authorization": self.headers.get("Authorization")})
                f = FILES.get(q.get("fileId", [""])[0])
            if self.headers.get("Authorization") != "Bearer app-key":
                return self.answer(401, {"error": "unauthorized"})
            if not f:
                return self.answer(404, {"error": "no such file"})
            return self.answer(200, raw=f["data"], ctype=f["contentType"])
        self.answer(404, {"error": "not found"})

    def do_POST(self):
        u = urlsplit(self.path)
        raw = self.body()
        if u.path == "/_mode":
            MODE["mode"] = json.loads(raw)["mode"]
            return self.answer(200, MODE)
        if u.path == "/_files":
            f = json.loads(raw)
            with LOCK:
                FILES[f["fileId"]] = {"contentType": f["contentType"], "data": base64.b64decode(f["data"])}
            return self.answer(200, {"ok": True})
        if u.path == "/_seal":
            req = json.loads(raw)
            return self.answer(200, seal_doc(req["plain"], req.get("suite", "gcm")))
        if self.misbehave():
            return
        auth = self.headers.get("Authorization")
        if u.path in ("/v1/message", "/wa/messages"):
            if MODE["mode"] == "fast":
                return self.answer(202, {"messages": [{"apiMessageId": "x", "accepted": True}]})
            try:
                enc = json.loads(raw)
                plain = open_doc(copy.deepcopy(enc))
                rec = {"path": u.path, "authorization": auth, "contentType": self.headers.get("Content-Type"),
                       "encrypted": enc, "plain": plain, "peer": self.client_address[1]}
            except Exception as e:  # a plaintext or undecryptable leaf is what the tests look for
                rec = {"path": u.path, "authorization": auth, "error": repr(e), "raw": raw.decode("utf-8", "replace")}
            with LOCK:
                RECORDS.append(rec)
            msgs = (json.loads(raw).get("messages") or []) if raw else []
            close = MODE["mode"] if MODE["mode"] in ("close", "silent-close") else None
            return self.answer(202, {"messages": [{"apiMessageId": f"api-{i}", "accepted": True, "to": m.get("to")}
                                                  for i, m in enumerate(msgs)], "error": None}, close=close)
        if u.path == "/v1/media":
            q = {k: v[0] for k, v in parse_qs(u.query).items()}
            rec = {"path": "POST /v1/media", "query": q, "authorization": auth,
                   "contentType": self.headers.get("Content-Type"), "encryptedSize": len(raw)}
            try:
                key = unwrap(q["encryptionKey"])
                pt, suite = interop.open_auto(key, raw)
                rec.update(plainSize=len(pt), plainSha256=hashlib.sha256(pt).hexdigest(), suite=suite,
                           hashOk=hashlib.sha256(pt).hexdigest() == q.get("sha256FileHash"))
            except Exception as e:
                rec["error"] = repr(e)
            with LOCK:
                RECORDS.append(rec)
                fid = f"file-{len(RECORDS)}"
                rec["fileId"] = fid
            return self.answer(200, {"fileId": fid, "error": None})
        self.answer(404, {"error": "not found"})


def seal_doc(doc, suite):
    k = interop.kind(doc)
    for m, p in list(interop.items(doc, k)):
        key, blob = PROV.generate()
        text, binary, hashp = interop.item_leaves(m, p, k)
        for ptr in text:
            interop.ptr_set(doc, ptr, base64.b64encode(interop.seal(suite, key, interop.ptr_get(doc, ptr).encode())).decode())
        if binary:
            data = base64.b64decode(interop.ptr_get(doc, binary))
            interop.ptr_set(doc, binary, base64.b64encode(interop.seal(suite, key, data)).decode())
            interop.ptr_set(doc, hashp, hashlib.sha256(data).hexdigest())
        m["encryptionKey"] = base64.b64encode(blob).decode()
    return doc


def main():
    global PROV
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--local-key")
    ap.add_argument("--kms-endpoint")
    ap.add_argument("--kms-key-id")
    ap.add_argument("--encryption-context", action="append")
    a = ap.parse_args()
    PROV = interop.provider(a)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ThreadingHTTPServer.request_queue_size = 4096
    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    print(f"fake platform on 127.0.0.1:{a.port}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
