#!/usr/bin/env python3
"""Re-verifies fixtures/vectors/*.txt with Python `cryptography`, independently of oneseal:
every `ok` vector must decrypt to its plaintext (and re-encrypt to the same bytes), every
`fail:*` vector must fail. Prints 'N passed, 0 failed' and exits non-zero on any failure."""
import base64, hashlib, json, os, sys
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives import padding, serialization, hashes
from cryptography.hazmat.primitives.asymmetric import padding as apad
from cryptography.exceptions import InvalidTag

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "vectors")

def load(name):
    """The one loader: blocks of `field: value` lines, blank-line separated, '#' comments."""
    blocks, cur = [], {}
    for line in open(os.path.join(HERE, name), encoding="utf-8"):
        line = line.rstrip("\n")
        if line.startswith("#"):
            continue
        if not line.strip():
            if cur: blocks.append(cur); cur = {}
            continue
        k, _, v = line.partition(": ")
        cur[k.strip(":")] = v
    if cur: blocks.append(cur)
    return blocks

def open_suite(suite, key, sealed):
    if suite == "gcm":
        if len(sealed) < 28: raise ValueError("length")
        return AESGCM(key).decrypt(sealed[:12], sealed[12:], None)
    if len(sealed) < 32 or (len(sealed) - 16) % 16: raise ValueError("length")
    d = Cipher(algorithms.AES(key), modes.CBC(sealed[:16])).decryptor()
    data = d.update(sealed[16:]) + d.finalize()
    u = padding.PKCS7(128).unpadder()
    return u.update(data) + u.finalize()

passed = failed = 0
def check(cond, what):
    global passed, failed
    if cond: passed += 1
    else:
        failed += 1; print("FAIL", what)

for v in load("suites.txt"):
    key = bytes.fromhex(v["key"]); sealed = base64.b64decode(v["sealed"])
    try:
        pt = open_suite(v["suite"], key, sealed); ok = True
    except (InvalidTag, ValueError):
        ok = False
    if v["expect"] == "ok":
        check(ok and pt == bytes.fromhex(v["plaintext"]), v["name"])
        check(sealed[: len(bytes.fromhex(v["nonce"]))] == bytes.fromhex(v["nonce"]), v["name"] + " nonce prefix")
    else:
        check(not ok, v["name"])

for v in load("local-blobs.txt"):
    master = bytes.fromhex(v["master"]); blob = base64.b64decode(v["blob"])
    kid = hashlib.sha256(master).digest()[:8]
    if v["expect"] == "ok":
        check(blob[:4] == b"OSL1" and blob[4:12] == kid and len(blob) == 72
              and AESGCM(master).decrypt(blob[12:24], blob[24:], None) == bytes.fromhex(v["data_key"]), v["name"])
    elif v["expect"] == "fail:wrong-local-key":
        check(blob[4:12] != kid, v["name"])
    else:
        try:
            ok = len(blob) == 72 and AESGCM(master).decrypt(blob[12:24], blob[24:], None) is not None
        except InvalidTag:
            ok = False
        check(not ok, v["name"])

priv = serialization.load_pem_private_key(open(os.path.join(HERE, "flows-private-key.pem"), "rb").read(), None)
for v in load("flows.txt"):
    req = json.loads(v["request"])
    key = priv.decrypt(base64.b64decode(req["encrypted_aes_key"]), apad.OAEP(mgf=apad.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    iv = base64.b64decode(req["initial_vector"])
    try:
        flow = AESGCM(key).decrypt(iv, base64.b64decode(req["encrypted_flow_data"]), None); ok = True
    except InvalidTag:
        ok = False
    if v["expect"] == "ok":
        check(ok and flow == bytes.fromhex(v["flow"]), v["name"])
        flipped = bytes(b ^ 0xFF for b in iv)
        check(AESGCM(key).decrypt(flipped, base64.b64decode(v["response_body"]), None) == bytes.fromhex(v["response"]), v["name"] + " response")
    else:
        check(not ok, v["name"])

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
