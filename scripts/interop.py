#!/usr/bin/env python3
"""An independent implementation of oneseal's wire format on Python
`cryptography` (and boto3 for KMS), used by the test suite to check that what oneseal writes
is the documented format -- not merely something oneseal reads back -- and that what a
platform writes by the documented format, oneseal reads.

  interop.py leaves DOC                      policy leaves of a plain DOC (JSON pointers), one per line
  interop.py open  PLAIN ENC [--local-key F | --kms-endpoint URL]
                                             decrypt ENC independently; exit 0 iff it equals PLAIN
  interop.py seal  PLAIN --suite gcm|cbc [--local-key F | --kms-endpoint URL --kms-key-id ID]
                                             encrypt PLAIN as the platform would; print the JSON
  interop.py open-media ENC ORIG --upload-json J [--local-key F | --kms-endpoint URL]
                                             decrypt a media file with the key in J (oneseal's
                                             `media encrypt` output); exit 0 iff it equals ORIG
                                             and J's hash, sizes and uploadQuery are right
  interop.py seal-media ORIG OUT --suite S [--local-key F | --kms-endpoint URL --kms-key-id ID]
                                             encrypt a media file as the platform would; print
                                             {"encryptionKey", "sha256Hash"}
"""
import argparse, base64, hashlib, json, os, sys
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives import padding
from cryptography.exceptions import InvalidTag

# ---- written out independently of oneseal's path engine -------------------------

def kind(doc):
    if "messages" in doc:
        one = any(isinstance(m, dict) and any(k in m for k in ("channel", "media", "template", "location", "contacts"))
                  for m in doc["messages"])
        return "one-request" if one and "encryptionKey" not in doc else "legacy-request"
    if "event" in doc: return "one-callback"
    if "integrationId" in doc: return "legacy-callback"
    raise SystemExit("unknown payload")

def deep(v, ptr, out):
    if isinstance(v, str): out.append(ptr)
    elif isinstance(v, dict):
        for k, c in v.items(): deep(c, f"{ptr}/{k}", out)
    elif isinstance(v, list):
        for i, c in enumerate(v): deep(c, f"{ptr}/{i}", out)

def strings_in(obj, ptr, keys, out):
    for k in keys:
        if isinstance(obj, dict) and isinstance(obj.get(k), str): out.append(f"{ptr}/{k}")

def values_of(obj, ptr, out):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, str): out.append(f"{ptr}/{k}")

def get(d, *ks):
    for k in ks:
        if not isinstance(d, dict): return None
        d = d.get(k)
    return d

def item_leaves(m, ptr, k):
    """Returns (text leaves, binary leaf or None, hash pointer or None)."""
    out = []
    if k == "one-request":
        binary = get(m, "media", "contentType") is not None and m.get("content") is not None
        if not binary: strings_in(m, ptr, ["content"], out)
        strings_in(m.get("media"), ptr + "/media", ["caption"], out)
        strings_in(m.get("location"), ptr + "/location", ["latitude", "longitude", "name", "address"], out)
        for i, c in enumerate(m.get("contacts") or []): deep(c, f"{ptr}/contacts/{i}", out)
        values_of(get(m, "hsm", "parameters"), ptr + "/hsm/parameters", out)
        t = m.get("template") or {}
        values_of(get(t, "header", "text", "parameters"), ptr + "/template/header/text/parameters", out)
        values_of(get(t, "body", "parameters"), ptr + "/template/body/parameters", out)
        values_of(get(t, "buttons", "suggestedResponse", "postbackData"), ptr + "/template/buttons/suggestedResponse/postbackData", out)
        for i, b in enumerate(get(t, "buttons", "websiteUrl") or []):
            values_of(b.get("parameters"), f"{ptr}/template/buttons/websiteUrl/{i}/parameters", out)
        return out, (ptr + "/content" if binary else None), (ptr + "/media/sha256Hash" if binary else None)
    if k == "legacy-request":
        binary = m.get("contentType") is not None and m.get("content") is not None
        strings_in(m, ptr, ["caption"] + ([] if binary else ["content"]), out)
        values_of(get(m, "hsm", "parameters"), ptr + "/hsm/parameters", out)
        return out, (ptr + "/content" if binary else None), (ptr + "/sha256Hash" if binary else None)
    binary = m.get("contentType") is not None and m.get("content") is not None
    names = ["caption", "postbackData", "locationAddress", "locationName", "latitude", "latitute", "longitude"]
    strings_in(m, ptr, names + ([] if binary else ["content"]), out)
    strings_in(m.get("whatsapp"), ptr + "/whatsapp", ["profileName"], out)
    for i, c in enumerate(m.get("contacts") or []): deep(c, f"{ptr}/contacts/{i}", out)
    return out, (ptr + "/content" if binary else None), (ptr + "/sha256Hash" if binary else None)

def items(doc, k):
    """(item object, JSON pointer, where its encryptionKey lives) for each message/item."""
    if k in ("one-request", "legacy-request"):
        for i, m in enumerate(doc["messages"]): yield m, f"/messages/{i}"
    elif k == "one-callback":
        for ty, arr in doc["event"].items():
            if ty == "messageStatusUpdate": continue
            for i, m in enumerate(arr): yield m, f"/event/{ty}/{i}"
    else:
        yield doc, ""

def leaves(doc):
    k = kind(doc); out = []
    for m, p in items(doc, k):
        t, b, _ = item_leaves(m, p, k); out += t + ([b] if b else [])
    return sorted(out)

# ---- pointer helpers --------------------------------------------------------------------------

def ptr_get(doc, ptr):
    for part in ptr.split("/")[1:]:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc

def ptr_set(doc, ptr, v):
    parts = ptr.split("/")[1:]
    for part in parts[:-1]:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    last = parts[-1]
    if isinstance(doc, list): doc[int(last)] = v
    else: doc[last] = v

# ---- suites -----------------------------------------------------------------------

def seal(suite, key, pt):
    if suite == "gcm":
        n = os.urandom(12); return n + AESGCM(key).encrypt(n, pt, None)
    iv = os.urandom(16); p = padding.PKCS7(128).padder(); data = p.update(pt) + p.finalize()
    e = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor(); return iv + e.update(data) + e.finalize()

def open_auto(key, data):
    try:
        return AESGCM(key).decrypt(data[:12], data[12:], None), "gcm"
    except (InvalidTag, ValueError):
        pass
    d = Cipher(algorithms.AES(key), modes.CBC(data[:16])).decryptor()
    raw = d.update(data[16:]) + d.finalize(); u = padding.PKCS7(128).unpadder()
    return u.update(raw) + u.finalize(), "cbc"

# ---- key providers ------------------------------------------------------------------------------

class Local:
    def __init__(self, path):
        self.master = open(path, "rb").read(); assert len(self.master) == 32
        self.kid = hashlib.sha256(self.master).digest()[:8]
    def unwrap(self, blob):
        assert blob[:4] == b"OSL1" and blob[4:12] == self.kid and len(blob) == 72, "bad local blob"
        return AESGCM(self.master).decrypt(blob[12:24], blob[24:], None)
    def generate(self):
        dk = os.urandom(32); n = os.urandom(12)
        return dk, b"OSL1" + self.kid + n + AESGCM(self.master).encrypt(n, dk, None)

class Kms:
    def __init__(self, endpoint, key_id=None, context=None):
        import boto3
        self.c = boto3.client("kms", endpoint_url=endpoint, region_name=os.environ.get("AWS_REGION", "us-east-1"))
        self.key_id = key_id; self.ctx = context or {}
    def unwrap(self, blob):
        kw = {"EncryptionContext": self.ctx} if self.ctx else {}
        return self.c.decrypt(CiphertextBlob=blob, **kw)["Plaintext"]
    def generate(self):
        kw = {"EncryptionContext": self.ctx} if self.ctx else {}
        r = self.c.generate_data_key(KeyId=self.key_id, KeySpec="AES_256", **kw)
        return r["Plaintext"], r["CiphertextBlob"]

def provider(a):
    ctx = dict(kv.split("=", 1) for kv in (a.encryption_context or []))
    if a.kms_endpoint: return Kms(a.kms_endpoint, a.kms_key_id, ctx)
    return Local(a.local_key)

# ---- commands ---------------------------------------------------------------------------------

def cmd_open(a):
    plain = json.load(open(a.plain)); enc = json.load(open(a.enc)); prov = provider(a)
    k = kind(plain); top_key = enc.get("encryptionKey") if k == "legacy-request" else None
    problems = []
    for (pm, p), (em, _) in zip(items(plain, k), items(enc, k)):
        blob = em.get("encryptionKey") or top_key
        if not isinstance(blob, str): problems.append(f"{p}: no encryptionKey"); continue
        key = prov.unwrap(base64.b64decode(blob))
        text, binary, hashp = item_leaves(pm, p, k)
        for ptr in text:
            ct = base64.b64decode(ptr_get(enc, ptr)); pt, suite = open_auto(key, ct)
            want = ptr_get(plain, ptr).encode()
            exp_len = len(want) + 28 if suite == "gcm" else 16 + (len(want) // 16 + 1) * 16
            if pt != want: problems.append(f"{ptr}: decrypts to something else")
            if len(ct) != exp_len: problems.append(f"{ptr}: {len(ct)} bytes, expected {exp_len} for {suite}")
        if binary:
            raw = base64.b64decode(ptr_get(plain, binary))
            pt, suite = open_auto(key, base64.b64decode(ptr_get(enc, binary)))
            if pt != raw: problems.append(f"{binary}: media decrypts to something else")
            if ptr_get(enc, hashp) != hashlib.sha256(raw).hexdigest(): problems.append(f"{hashp}: not the SHA-256 of the media")
    # Everything that is not a policy leaf (nor encryptionKey/sha256Hash) must be untouched.
    pol = set(leaves(plain))
    def walk(x, y, ptr):
        if ptr in pol: return
        if isinstance(x, dict):
            if not isinstance(y, dict): problems.append(f"{ptr}: changed type"); return
            for key in x:
                if key in ("encryptionKey", "sha256Hash"): continue
                if key not in y: problems.append(f"{ptr}/{key}: missing"); continue
                walk(x[key], y[key], f"{ptr}/{key}")
        elif isinstance(x, list):
            if not isinstance(y, list) or len(x) != len(y): problems.append(f"{ptr}: changed array"); return
            for i, (c, d) in enumerate(zip(x, y)): walk(c, d, f"{ptr}/{i}")
        elif x != y: problems.append(f"{ptr}: non-policy leaf changed")
    walk(plain, enc, "")
    for pr in problems: print("MISMATCH", pr)
    print("interop open:", "ok" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0

def cmd_seal(a):
    doc = json.load(open(a.plain)); prov = provider(a); k = kind(doc); blob_for_doc = None
    for m, p in list(items(doc, k)):
        if k == "legacy-request" and blob_for_doc:
            key, blob = blob_for_doc
        else:
            key, blob = prov.generate(); blob_for_doc = (key, blob)
        text, binary, hashp = item_leaves(m, p, k)
        for ptr in text:
            ptr_set(doc, ptr, base64.b64encode(seal(a.suite, key, ptr_get(doc, ptr).encode())).decode())
        if binary:
            raw = base64.b64decode(ptr_get(doc, binary))
            ptr_set(doc, binary, base64.b64encode(seal(a.suite, key, raw)).decode())
            ptr_set(doc, hashp, hashlib.sha256(raw).hexdigest())
        if k != "legacy-request": m["encryptionKey"] = base64.b64encode(blob).decode()
    if k == "legacy-request" and blob_for_doc: doc["encryptionKey"] = base64.b64encode(blob_for_doc[1]).decode()
    json.dump(doc, sys.stdout, ensure_ascii=False); print()
    return 0

def cmd_open_media(a):
    from urllib.parse import parse_qs
    meta = json.load(open(a.upload_json)); prov = provider(a)
    key = prov.unwrap(base64.b64decode(meta["encryptionKey"]))
    enc = open(a.enc, "rb").read(); orig = open(a.orig, "rb").read()
    pt, suite = open_auto(key, enc)
    problems = []
    if pt != orig: problems.append("decrypted file differs from the original")
    if suite != meta["suite"]: problems.append(f"suite {suite} != {meta['suite']}")
    if meta["sha256FileHash"] != hashlib.sha256(orig).hexdigest(): problems.append("sha256FileHash is not the plaintext's")
    if meta["byteSize"] != len(orig) or meta["encryptedByteSize"] != len(enc): problems.append("sizes")
    q = parse_qs(meta["uploadQuery"], strict_parsing=True)
    for k in ("encryptionKey", "kmsArn", "sha256FileHash", "fileName"):
        if q.get(k) != [meta[k]]: problems.append(f"uploadQuery {k} does not parse back")
    if a.to and q.get("to") != [a.to]: problems.append("uploadQuery to")
    if not meta["uploadUrl"].endswith("?" + meta["uploadQuery"]): problems.append("uploadUrl")
    for p in problems: print("MISMATCH", p)
    return 1 if problems else 0

def cmd_seal_media(a):
    prov = provider(a); key, blob = prov.generate(); orig = open(a.orig, "rb").read()
    open(a.out, "wb").write(seal(a.suite, key, orig))
    print(json.dumps({"encryptionKey": base64.b64encode(blob).decode(), "sha256Hash": hashlib.sha256(orig).hexdigest()}))
    return 0

if __name__ == "__main__":
    ap = argparse.ArgumentParser(); sub = ap.add_subparsers(dest="cmd", required=True)
    l = sub.add_parser("leaves"); l.add_argument("doc")
    for name in ("open", "seal"):
        s = sub.add_parser(name); s.add_argument("plain")
        if name == "open": s.add_argument("enc")
        else: s.add_argument("--suite", default="gcm")
        s.add_argument("--local-key"); s.add_argument("--kms-endpoint"); s.add_argument("--kms-key-id")
        s.add_argument("--encryption-context", action="append")
    om = sub.add_parser("open-media"); om.add_argument("enc"); om.add_argument("orig"); om.add_argument("--upload-json", required=True); om.add_argument("--to")
    sm = sub.add_parser("seal-media"); sm.add_argument("orig"); sm.add_argument("out"); sm.add_argument("--suite", default="gcm")
    for s_ in (om, sm):
        s_.add_argument("--local-key"); s_.add_argument("--kms-endpoint"); s_.add_argument("--kms-key-id"); s_.add_argument("--encryption-context", action="append")
    a = ap.parse_args()
    if a.cmd == "open-media": sys.exit(cmd_open_media(a))
    if a.cmd == "seal-media": sys.exit(cmd_seal_media(a))
    if a.cmd == "leaves":
        print("\n".join(leaves(json.load(open(a.doc))))); sys.exit(0)
    sys.exit(cmd_open(a) if a.cmd == "open" else cmd_seal(a))
