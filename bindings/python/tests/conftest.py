"""Shared fixtures: the repository, a moto server (KMS) with a counting proxy in front, and a
local key. A missing moto is a failing test, never a skip."""

import http.client
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
# The project's independent implementation of the wire format, for its policy leaves.
sys.path.insert(0, str(ROOT / "scripts"))
import interop  # noqa: E402


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, proc, secs=30):
    t = time.time()
    while time.time() - t < secs:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            assert proc.poll() is None, "the server exited"
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


class Counting(http.server.BaseHTTPRequestHandler):
    """Forwards to moto and counts KMS operations by their X-Amz-Target."""

    upstream = 0
    counts = {}
    lock = threading.Lock()
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        op = (self.headers.get("X-Amz-Target") or "").split(".")[-1]
        with Counting.lock:
            Counting.counts[op] = Counting.counts.get(op, 0) + 1
        c = http.client.HTTPConnection("127.0.0.1", Counting.upstream, timeout=30)
        c.request("POST", self.path, body, {k: v for k, v in self.headers.items() if k.lower() != "host"})
        r = c.getresponse()
        data = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


@pytest.fixture(scope="session")
def moto():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port, proc)
    Counting.upstream = port
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Counting)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    yield {"url": f"http://127.0.0.1:{port}", "proxy": f"http://127.0.0.1:{proxy.server_port}", "counts": Counting.counts}
    proxy.shutdown()
    proc.terminate()
    proc.wait()


@pytest.fixture(scope="session")
def kms_key(moto):
    import boto3

    c = boto3.client("kms", endpoint_url=moto["url"], region_name="us-east-1")
    return c.create_key()["KeyMetadata"]["Arn"]


@pytest.fixture
def local_key(tmp_path):
    p = tmp_path / "local.key"
    p.write_bytes(os.urandom(32))
    p.chmod(0o600)
    return p


@pytest.fixture(scope="session")
def cli():
    """The CLI the test suite built (the same engine, as a separate process)."""
    b = Path(os.environ.get("ONESEAL_BIN", ROOT / "target" / "debug" / "oneseal"))
    assert b.exists(), f"no oneseal binary at {b}: build it (cargo build -p oneseal-cli) or set ONESEAL_BIN"
    return b


def fixtures(sub=""):
    return sorted((ROOT / "fixtures" / sub).rglob("*.json"))


def without_bookkeeping(decrypted, original):
    """`decrypted` without the members oneseal adds (encryptionKey, sha256Hash) where the
    original had none."""
    if isinstance(decrypted, dict) and isinstance(original, dict):
        return {k: without_bookkeeping(v, original[k]) for k, v in decrypted.items() if k in original}
    if isinstance(decrypted, list) and isinstance(original, list):
        return [without_bookkeeping(d, o) for d, o in zip(decrypted, original)]
    return decrypted


def leaves(doc):
    """The policy leaves of a plain document, by the independent implementation."""
    return interop.leaves(doc)


def load(p):
    return json.loads(Path(p).read_text())
