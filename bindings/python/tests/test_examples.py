"""The examples run: the Spark job on local[2] over a callback archive sealed by the
independent implementation, and the Lambda handler on a sealed callback."""

import base64
import importlib.util
import json
import os
import subprocess
import sys

from conftest import ROOT, fixtures, load, without_bookkeeping

EXAMPLES = ROOT / "bindings" / "python" / "examples"
INTEROP = ROOT / "scripts" / "interop.py"


def sealed_callbacks(local_key, n):
    plains, lines = [], []
    base = fixtures("one-api/callbacks")
    for i in range(n):
        p = load(base[i % len(base)])
        for ev in p.get("event", {}).values():
            for it in ev:
                it["messageId"] = f"m{i}"
        plains.append(p)
    src = local_key.parent / "plain.json"
    for p in plains:
        src.write_text(json.dumps(p))
        r = subprocess.run([sys.executable, str(INTEROP), "seal", str(src), "--local-key", str(local_key)],
                           capture_output=True, check=True)
        lines.append(r.stdout.decode().strip())
    return plains, lines


def test_the_spark_job_decrypts_an_archive_on_local_2(local_key, tmp_path):
    plains, lines = sealed_callbacks(local_key, 40)
    archive = tmp_path / "archive.ndjson"
    archive.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    env = dict(os.environ, ONESEAL_LOCAL_KEY=str(local_key), PYSPARK_PYTHON=sys.executable,
               PYSPARK_DRIVER_PYTHON=sys.executable)
    r = subprocess.run([sys.executable, str(EXAMPLES / "spark_decrypt_archive.py"), str(archive), str(out),
                        "--master", "local[2]"], capture_output=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    got = [json.loads(l) for f in sorted(out.glob("part-*")) for l in f.read_text().splitlines()]
    assert len(got) == len(plains)
    by_id = {next(iter(g["event"].values()))[0]["messageId"]: g for g in got}
    for p in plains:
        mid = next(iter(p["event"].values()))[0]["messageId"]
        assert without_bookkeeping(by_id[mid], p) == p


def test_the_lambda_handler_decrypts_an_authenticated_callback(local_key, monkeypatch, capsys):
    plains, lines = sealed_callbacks(local_key, 1)
    monkeypatch.setenv("CALLBACK_PASSWORD", "a-long-random-password")
    monkeypatch.setenv("HOME", str(local_key.parent))
    import oneseal

    spec = importlib.util.spec_from_file_location("handler", EXAMPLES / "lambda_callback_handler.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.ENGINE = oneseal.Engine(local_key=local_key)
    seen = []
    mod.handle = seen.append
    auth = "Basic " + base64.b64encode(b"clickatell:a-long-random-password").decode()
    assert mod.handler({"headers": {"authorization": auth}, "body": lines[0]}, None)["statusCode"] == 200
    assert without_bookkeeping(seen[0], plains[0]) == plains[0]
    assert mod.handler({"headers": {"authorization": "Basic x"}, "body": lines[0]}, None)["statusCode"] == 401
