#!/usr/bin/env bash
# The whole gateway loop on this machine in one command, on the embedded default (a local
# key made for this run: no cloud account): a gateway, a demo platform that decrypts what it
# receives (scripts/fake_platform.py, independent of oneseal) and a demo app that prints the
# callbacks it gets (scripts/fake_app.py). It sends a plain One API message through the app
# side and shows what the platform received and what that decrypts to; then a
# platform-encrypted callback to the public side and what the app received. Everything it
# started is stopped at the end.
#
# Usage: scripts/try-gateway.sh          (needs python3; builds oneseal if needed)
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet -p oneseal-cli --bin oneseal
BIN=$PWD/target/debug/oneseal
WORK=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$WORK"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 1 100); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "try-gateway: $2 did not start (see $WORK)" >&2; exit 1; }
show() { python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin), indent=2))'; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

PP=$(port); APP=$(port); A=$(port); P=$(port); M=$(port)
head -c 32 /dev/urandom >"$WORK/local.key"; chmod 600 "$WORK/local.key"
python3 scripts/fake_platform.py --port "$PP" --local-key "$WORK/local.key" >"$WORK/platform.log" 2>&1 & PIDS+=($!)
python3 scripts/fake_app.py --port "$APP" >"$WORK/app.log" 2>&1 & PIDS+=($!)
cat >"$WORK/oneseal.toml" <<TOML
[gateway]
app_listen = "127.0.0.1:$A"
public_listen = "127.0.0.1:$P"
admin_listen = "127.0.0.1:$M"
upstream = "http://127.0.0.1:$PP"      # the demo platform, on loopback
spool_dir = "$WORK/spool"

[gateway.callbacks]
forward_to = "http://127.0.0.1:$APP/whatsapp/callbacks"
username = "clickatell"
password_env = "DEMO_CALLBACK_PASSWORD"
TOML
DEMO_CALLBACK_PASSWORD=demo-password-of-16+chars ONESEAL_LOCAL_KEY="$WORK/local.key" \
  "$BIN" gateway --config "$WORK/oneseal.toml" >"$WORK/gateway.log" 2>&1 & PIDS+=($!)
wait_for "http://127.0.0.1:$M/livez" "the gateway"
wait_for "http://127.0.0.1:$PP/_records" "the demo platform"
wait_for "http://127.0.0.1:$APP/_records" "the demo app"
echo "gateway: app side http://127.0.0.1:$A, public side http://127.0.0.1:$P, admin http://127.0.0.1:$M"
echo "config:  $WORK/oneseal.toml (local key $WORK/local.key, made for this run)"

MSG='{"messages":[{"channel":"whatsapp","to":"2799900001","content":"Your one-time PIN is 482913"}]}'
say "1. your app sends a plain One API message to the app side"
echo "POST http://127.0.0.1:$A/v1/message  $MSG"
echo -n "answer: "
curl -sS -X POST "http://127.0.0.1:$A/v1/message" -H 'Authorization: Bearer your-one-api-key' \
  -H 'Content-Type: application/json' -d "$MSG"
echo
say "2. what the platform received (content is ciphertext; encryptionKey wraps the data key)"
curl -fsS "http://127.0.0.1:$PP/_records" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)[-1]["encrypted"], indent=2))'
say "3. what the platform decrypts it to"
curl -fsS "http://127.0.0.1:$PP/_records" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)[-1]["plain"], indent=2))'

CB='{"event":{"moText":[{"channel":"whatsapp","messageId":"demo-1","from":"2799900001","to":"2799900002","timestamp":1764979200000,"content":"Yes, that was me","encryptionKey":null}]}}'
SEALED=$(curl -fsS -X POST "http://127.0.0.1:$PP/_seal" -H 'Content-Type: application/json' -d "{\"plain\": $CB}")
say "4. the platform posts an encrypted callback to the public side"
echo "$SEALED" | show
echo -n "answer: "
curl -sS -X POST "http://127.0.0.1:$P/callbacks" -u clickatell:demo-password-of-16+chars \
  -H 'Content-Type: application/json' -d "$SEALED"
echo
say "5. what your app received (decrypted, on disk in the spool until the app answered 2xx)"
for _ in $(seq 1 50); do
  n=$(curl -fsS "http://127.0.0.1:$APP/_records" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
  [ "$n" -gt 0 ] && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$APP/_records" | python3 -c 'import json,sys; r=json.load(sys.stdin)[-1]; print(json.dumps(r.get("body", r), indent=2))'
say "done: stopping the gateway, the demo platform and the demo app"
