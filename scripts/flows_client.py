#!/usr/bin/env python3
"""An independent WhatsApp-style Flows client on Python `cryptography`, per Meta's published
scheme, for the test suite:

  flows_client.py request PUBLIC_PEM FLOW_FILE STATE   print an encrypted request body; save key+IV to STATE
  flows_client.py response STATE BODY_FILE            decrypt a response body (flipped IV); print it
  flows_client.py pkcs1 PKCS8_PEM OUT [PASSPHRASE]     re-encode a private key as PKCS#1 (traditional) PEM
  flows_client.py check-private PEM PUBLIC_PEM [PASSPHRASE]  exit 0 iff PEM loads and matches PUBLIC_PEM
  flows_client.py sign SECRET BODY_FILE                print `sha256=<hex>` for the body
  flows_client.py genkey DIR [PASSPHRASE]              write DIR/pkcs8.pem, DIR/pkcs1.pem, DIR/public.pem
                                                       (and DIR/pkcs8-enc.pem with PASSPHRASE)
  flows_client.py selfsigned DIR                       write DIR/cert.pem, DIR/key.pem for 127.0.0.1
  flows_client.py post URL PUBLIC_PEM FLOW_FILE [--secret S] [--bad-signature] [--garbage-key] [--cafile PEM]
      what Meta's client does against an endpoint: encrypt, sign (with S), POST, decrypt the
      answer under the flipped IV; prints {"status": N, "json": <decrypted answer> | "raw": text}
"""
import base64, hashlib, hmac, json, os, sys, urllib.error, urllib.request
from cryptography.hazmat.primitives import serialization, hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

cmd = sys.argv[1]
if cmd == "request":
    pub = serialization.load_pem_public_key(open(sys.argv[2], "rb").read())
    flow = open(sys.argv[3], "rb").read()
    key, iv = os.urandom(16), os.urandom(16)
    wrapped = pub.encrypt(key, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    json.dump({"k": key.hex(), "iv": iv.hex()}, open(sys.argv[4], "w"))
    print(json.dumps({"encrypted_flow_data": base64.b64encode(AESGCM(key).encrypt(iv, flow, None)).decode(),
                      "encrypted_aes_key": base64.b64encode(wrapped).decode(),
                      "initial_vector": base64.b64encode(iv).decode()}))
elif cmd == "response":
    st = json.load(open(sys.argv[2])); key = bytes.fromhex(st["k"]); iv = bytes.fromhex(st["iv"])
    body = base64.b64decode(open(sys.argv[3], "rb").read())
    sys.stdout.buffer.write(AESGCM(key).decrypt(bytes(b ^ 0xFF for b in iv), body, None))
elif cmd == "pkcs1":
    pw = sys.argv[4].encode() if len(sys.argv) > 4 else None
    k = serialization.load_pem_private_key(open(sys.argv[2], "rb").read(), pw)
    open(sys.argv[3], "wb").write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
elif cmd == "check-private":
    pw = sys.argv[4].encode() if len(sys.argv) > 4 else None
    k = serialization.load_pem_private_key(open(sys.argv[2], "rb").read(), pw)
    mine = k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    sys.exit(0 if mine.strip() == open(sys.argv[3], "rb").read().strip() and k.key_size == 2048 else 1)
elif cmd == "sign":
    print("sha256=" + hmac.new(sys.argv[2].encode(), open(sys.argv[3], "rb").read(), hashlib.sha256).hexdigest())
elif cmd == "genkey":
    from cryptography.hazmat.primitives.asymmetric import rsa
    d = sys.argv[2]
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    def w(name, data):
        open(os.path.join(d, name), "wb").write(data)
    E, P = serialization.Encoding.PEM, serialization.PrivateFormat
    w("pkcs8.pem", k.private_bytes(E, P.PKCS8, serialization.NoEncryption()))
    w("pkcs1.pem", k.private_bytes(E, P.TraditionalOpenSSL, serialization.NoEncryption()))
    w("public.pem", k.public_key().public_bytes(E, serialization.PublicFormat.SubjectPublicKeyInfo))
    if len(sys.argv) > 3:
        w("pkcs8-enc.pem", k.private_bytes(E, P.PKCS8, serialization.BestAvailableEncryption(sys.argv[3].encode())))
elif cmd == "post":
    url, pub_path, flow_path = sys.argv[2:5]
    rest = sys.argv[5:]
    secret = rest[rest.index("--secret") + 1] if "--secret" in rest else None
    pub = serialization.load_pem_public_key(open(pub_path, "rb").read())
    flow = open(flow_path, "rb").read()
    key, iv = os.urandom(16), os.urandom(16)
    wrapped = pub.encrypt(key, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    if "--garbage-key" in rest:
        wrapped = os.urandom(len(wrapped))
    body = json.dumps({"encrypted_flow_data": base64.b64encode(AESGCM(key).encrypt(iv, flow, None)).decode(),
                       "encrypted_aes_key": base64.b64encode(wrapped).decode(),
                       "initial_vector": base64.b64encode(iv).decode()}).encode()
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if "--bad-signature" in rest:
            sig = hmac.new(b"not-the-secret", body, hashlib.sha256).hexdigest()
        headers["X-Hub-Signature-256"] = "sha256=" + sig
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    ctx = None
    if "--cafile" in rest:
        import ssl
        ctx = ssl.create_default_context(cafile=rest[rest.index("--cafile") + 1])
    try:
        with urllib.request.urlopen(req, timeout=30, context=ctx) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    out = {"status": status}
    if status == 200:
        out["json"] = json.loads(AESGCM(key).decrypt(bytes(b ^ 0xFF for b in iv), base64.b64decode(raw), None))
    else:
        out["raw"] = raw.decode("utf-8", "replace")
    print(json.dumps(out))
elif cmd == "selfsigned":
    import datetime, ipaddress
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    from cryptography.hazmat.primitives.asymmetric import ec
    d = sys.argv[2]
    k = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(k.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(k, hashes.SHA256()))
    open(os.path.join(d, "cert.pem"), "wb").write(cert.public_bytes(serialization.Encoding.PEM))
    open(os.path.join(d, "key.pem"), "wb").write(k.private_bytes(serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
