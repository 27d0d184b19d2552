"""Media files and the Flows endpoint crypto, against independent implementations."""

import json
import os
import subprocess
import sys

import oneseal
import pytest
from conftest import ROOT

FLOWS_CLIENT = ROOT / "scripts" / "flows_client.py"
INTEROP = ROOT / "scripts" / "interop.py"


def test_media_round_trips_and_the_independent_implementation_opens_it(local_key, tmp_path):
    eng = oneseal.Engine(local_key=local_key)
    src = tmp_path / "photo.jpg"
    src.write_bytes(os.urandom(300_000))
    enc = tmp_path / "photo.jpg.enc"
    r = eng.encrypt_file(src, enc, to="2799900001")
    assert r.byte_size == 300_000 and r.encrypted_byte_size > r.byte_size
    assert "to=2799900001" in r.upload_query and "sha256FileHash=" + r.sha256_file_hash in r.upload_query
    out = tmp_path / "back.jpg"
    assert eng.decrypt_file(enc, out, r.encryption_key, r.sha256_file_hash) == 300_000
    assert out.read_bytes() == src.read_bytes()
    upload = tmp_path / "upload.json"
    upload.write_text(json.dumps({
        "fileName": "photo.jpg", "byteSize": r.byte_size, "encryptedByteSize": r.encrypted_byte_size,
        "sha256FileHash": r.sha256_file_hash, "encryptionKey": r.encryption_key, "kmsArn": r.kms_arn,
        "suite": "gcm", "uploadQuery": r.upload_query,
        "uploadUrl": "https://platform.clickatell.com/v1/media?" + r.upload_query,
    }))
    p = subprocess.run([sys.executable, str(INTEROP), "open-media", str(enc), str(src), "--upload-json",
                        str(upload), "--to", "2799900001", "--local-key", str(local_key)], capture_output=True)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()


def test_media_with_a_wrong_hash_raises_and_leaves_nothing_at_out(local_key, tmp_path):
    eng = oneseal.Engine(local_key=local_key)
    src = tmp_path / "a.bin"
    src.write_bytes(b"x" * 10_000)
    enc = tmp_path / "a.enc"
    r = eng.encrypt_file(src, enc, broadcast=True)
    out = tmp_path / "out.bin"
    with pytest.raises(oneseal.CryptoError):
        eng.decrypt_file(enc, out, r.encryption_key, "0" * 64)
    assert not out.exists()


def test_media_needs_exactly_one_of_recipient_or_broadcast(local_key, tmp_path):
    eng = oneseal.Engine(local_key=local_key)
    src = tmp_path / "a.bin"
    src.write_bytes(b"x")
    with pytest.raises(oneseal.UsageError, match="broadcast"):
        eng.encrypt_file(src, tmp_path / "o", None, False)


def test_ndjson_on_file_objects_round_trips(local_key, tmp_path):
    import io

    eng = oneseal.Engine(local_key=local_key)
    lines = b"".join(
        json.dumps({"messages": [{"channel": "whatsapp", "to": "1", "content": f"m{i}"}]}).encode() + b"\n"
        for i in range(100)
    )
    sealed = io.BytesIO()
    assert eng.encrypt_ndjson(io.BytesIO(lines), sealed) == 100
    # Every content sealed (not the bare text "m42" anywhere: random base64 contains it in
    # about one run in thirteen, which is how this test once failed in CI).
    contents = [json.loads(l)["messages"][0]["content"] for l in sealed.getvalue().splitlines()]
    assert len(contents) == 100
    assert all(c != f"m{i}" for i, c in enumerate(contents))
    enc = tmp_path / "s.ndjson"
    enc.write_bytes(sealed.getvalue())
    out = tmp_path / "p.ndjson"
    assert eng.decrypt_ndjson(enc, out) == 100
    got = [json.loads(l)["messages"][0]["content"] for l in out.read_bytes().splitlines()]
    assert got == [f"m{i}" for i in range(100)]


def test_a_bad_ndjson_line_is_named(local_key, tmp_path):
    eng = oneseal.Engine(local_key=local_key)
    src = tmp_path / "in.ndjson"
    src.write_text('{"messages":[{"channel":"whatsapp","to":"1","content":"a"}]}\n{"messages":[{"channel":"whatsapp","to":"1","content":7}]}\n')
    with pytest.raises(oneseal.BadInputError, match="line 2") as e:
        eng.encrypt_ndjson(src, tmp_path / "out.ndjson")
    assert e.value.path == "messages[0].content"
    assert not (tmp_path / "out.ndjson").exists()


def flows_keys(tmp_path):
    subprocess.run([sys.executable, str(FLOWS_CLIENT), "genkey", str(tmp_path)], check=True, capture_output=True)
    return (tmp_path / "pkcs8.pem").read_text(), tmp_path / "public.pem"


def test_flows_request_from_the_independent_client_is_answered_once(tmp_path):
    private, public = flows_keys(tmp_path)
    flow = tmp_path / "flow.json"
    flow.write_text(json.dumps({"version": "3.0", "action": "INIT", "flow_token": "t"}))
    state = tmp_path / "state.json"
    body = subprocess.run([sys.executable, str(FLOWS_CLIENT), "request", str(public), str(flow), str(state)],
                          check=True, capture_output=True).stdout
    req, sealer = oneseal.flows.decrypt_request(body, private)
    assert req == {"version": "3.0", "action": "INIT", "flow_token": "t"}
    answer = sealer.seal({"screen": "WELCOME", "data": {}})
    ans = tmp_path / "answer.txt"
    ans.write_text(answer)
    opened = subprocess.run([sys.executable, str(FLOWS_CLIENT), "response", str(state), str(ans)],
                            check=True, capture_output=True).stdout
    assert json.loads(opened) == {"screen": "WELCOME", "data": {}}
    with pytest.raises(oneseal.UsageError, match="used already"):
        sealer.seal({"again": True})


def test_flows_signature_is_checked(tmp_path):
    body = tmp_path / "b.json"
    body.write_bytes(b'{"x":1}')
    header = subprocess.run([sys.executable, str(FLOWS_CLIENT), "sign", "app-secret", str(body)],
                            check=True, capture_output=True).stdout.decode().strip()
    oneseal.flows.verify_signature(b'{"x":1}', header, "app-secret")
    with pytest.raises(oneseal.CryptoError):
        oneseal.flows.verify_signature(b'{"x":2}', header, "app-secret")


def test_an_undecryptable_flows_request_is_a_crypto_error(tmp_path):
    private, _ = flows_keys(tmp_path)
    (tmp_path / "other").mkdir()
    _, public = flows_keys(tmp_path / "other")
    flow = tmp_path / "flow.json"
    flow.write_text("{}")
    body = subprocess.run([sys.executable, str(FLOWS_CLIENT), "request", str(public), str(flow),
                           str(tmp_path / "s.json")], check=True, capture_output=True).stdout
    with pytest.raises(oneseal.CryptoError):
        oneseal.flows.decrypt_request(body, private)
