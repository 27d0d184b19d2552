"""Interop: with the CLI (the same engine, another process) both ways, and with the
project's independent Python implementation of the wire format."""

import json
import subprocess
import sys

import oneseal
from conftest import ROOT, fixtures, load, without_bookkeeping

INTEROP = ROOT / "scripts" / "interop.py"


def run_cli(cli, args, stdin, local_key):
    r = subprocess.run(
        [str(cli), *args, "--local-key", str(local_key)],
        input=stdin,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(local_key.parent)},
    )
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout


def test_the_cli_encrypts_and_python_decrypts(cli, local_key):
    eng = oneseal.Engine(local_key=local_key)
    for p in fixtures("one-api/requests"):
        sealed = run_cli(cli, ["encrypt", str(p)], None, local_key)
        plain = load(p)
        assert without_bookkeeping(eng.decrypt(json.loads(sealed)), plain) == plain, p


def test_python_encrypts_and_the_cli_decrypts(cli, local_key):
    eng = oneseal.Engine(local_key=local_key)
    for p in fixtures("one-api/requests"):
        plain = load(p)
        sealed = eng.encrypt(p.read_bytes())
        back = json.loads(run_cli(cli, ["decrypt"], sealed, local_key))
        assert without_bookkeeping(back, plain) == plain, p


def test_the_independent_implementation_opens_what_python_seals(local_key, tmp_path):
    eng = oneseal.Engine(local_key=local_key)
    for p in fixtures("one-api/requests") + fixtures("legacy/requests"):
        enc = tmp_path / "enc.json"
        enc.write_bytes(eng.encrypt(p.read_bytes()))
        r = subprocess.run(
            [sys.executable, str(INTEROP), "open", str(p), str(enc), "--local-key", str(local_key)],
            capture_output=True,
        )
        assert r.returncode == 0, (p, r.stdout.decode(), r.stderr.decode())


def test_python_opens_what_the_independent_implementation_seals_as_the_platform(local_key):
    eng = oneseal.Engine(local_key=local_key)
    for p in fixtures("one-api/callbacks") + fixtures("legacy/callbacks"):
        r = subprocess.run(
            [sys.executable, str(INTEROP), "seal", str(p), "--suite", "gcm", "--local-key", str(local_key)],
            capture_output=True,
        )
        assert r.returncode == 0, r.stderr.decode()
        plain = load(p)
        back = json.loads(eng.decrypt(r.stdout))
        assert without_bookkeeping(back, plain) == plain, p
