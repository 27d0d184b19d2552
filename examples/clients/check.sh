#!/usr/bin/env bash
# The client examples, each run for real against a gateway on the local key and the demo
# platform (scripts/fake_platform.py): the client sends a message (the platform must receive
# it encrypted, and it must decrypt to what was sent), then refuses a forged callback (wrong
# signature: 401) and accepts the platform's encrypted callback as the gateway forwards it,
# decrypted and signed. The suite runs this.
#
# Usage: examples/clients/check.sh [python|node|java ...]   (default: all three)
set -euo pipefail
cd "$(dirname "$0")/../.."
LANGS=("$@")
[ $# -gt 0 ] || LANGS=(python node java)
BIN=${ONESEAL_BIN:-$PWD/target/debug/oneseal}
[ -x "$BIN" ] || cargo build --quiet -p oneseal-cli --bin oneseal
WORK=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 1 150); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "clients: $2 did not start" >&2; exit 1; }
fail() { echo "clients/$1: $2" >&2; echo "--- client output:" >&2; cat "$WORK/$1.out" >&2 || true; exit 1; }

PP=$(port); A=$(port); P=$(port); M=$(port); C=$(port)
head -c 32 /dev/urandom >"$WORK/local.key"; chmod 600 "$WORK/local.key"
SECRET="whsec_$(head -c 32 /dev/urandom | base64)"
python3 scripts/fake_platform.py --port "$PP" --local-key "$WORK/local.key" >"$WORK/platform.log" 2>&1 & PIDS+=($!)
cat >"$WORK/oneseal.toml" <<TOML
[gateway]
app_listen = "127.0.0.1:$A"
public_listen = "127.0.0.1:$P"
admin_listen = "127.0.0.1:$M"
upstream = "http://127.0.0.1:$PP"
spool_dir = "$WORK/spool"
[gateway.callbacks]
forward_to = "http://127.0.0.1:$C/whatsapp/callbacks"
username = "clickatell"
password_env = "CB_PASSWORD"
signing_secret_env = "SIGNING_SECRET"
max_retry_seconds = 1
TOML
CB_PASSWORD=callback-password-16+ SIGNING_SECRET="$SECRET" ONESEAL_LOCAL_KEY="$WORK/local.key" \
  "$BIN" gateway --config "$WORK/oneseal.toml" >"$WORK/gateway.log" 2>&1 & PIDS+=($!)
wait_for "http://127.0.0.1:$M/livez" "the gateway"
wait_for "http://127.0.0.1:$PP/_records" "the demo platform"

for lang in "${LANGS[@]}"; do
  case $lang in
    python) CMD=(python3 examples/clients/client.py) ;;
    node) CMD=(node examples/clients/client.mjs) ;;
    java) CMD=(java examples/clients/OnesealClient.java) ;;
    *) echo "clients: unknown language $lang" >&2; exit 2 ;;
  esac
  ONESEAL_APP_URL="http://127.0.0.1:$A" ONE_API_KEY="Bearer key-of-$lang" ONESEAL_SIGNING_SECRET="$SECRET" \
    LISTEN_PORT=$C ONCE=1 timeout 120 "${CMD[@]}" >"$WORK/$lang.out" 2>&1 & CL=$!
  for _ in $(seq 1 600); do grep -q '^listening on' "$WORK/$lang.out" 2>/dev/null && break; kill -0 $CL 2>/dev/null || break; sleep 0.1; done
  grep -q '^sent: 202 ' "$WORK/$lang.out" || fail "$lang" "the message was not accepted"
  # The platform got ciphertext, under the client's API key, that decrypts to the message.
  curl -fsS "http://127.0.0.1:$PP/_records" | python3 -c '
import json, sys
r = json.load(sys.stdin)[-1]
enc, plain = json.dumps(r["encrypted"]), r["plain"]["messages"][0]["content"]
assert "482913" not in enc and "encryptionKey" in enc, enc
assert plain == "Your one-time PIN is 482913", plain
' || fail "$lang" "the platform did not get the message encrypted"
  # A forgery straight to the client: refused.
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$C/whatsapp/callbacks" \
    -H "webhook-id: msg_forged" -H "webhook-timestamp: $(date +%s)" -H "webhook-signature: v1,$(head -c 32 /dev/urandom | base64)" \
    -H 'Content-Type: application/json' -d '{"event":{"moText":[{"content":"forged"}]}}')
  [ "$code" = 401 ] || fail "$lang" "a forged callback got $code, not 401"
  # The platform's encrypted callback, through the gateway: verified and decrypted.
  CB="{\"event\":{\"moText\":[{\"channel\":\"whatsapp\",\"messageId\":\"cb-$lang\",\"from\":\"2799900001\",\"timestamp\":1764979200000,\"content\":\"Yes, that was me ($lang)\",\"encryptionKey\":null}]}}"
  SEALED=$(curl -fsS -X POST "http://127.0.0.1:$PP/_seal" -H 'Content-Type: application/json' -d "{\"plain\": $CB}")
  curl -fsS -o /dev/null -X POST "http://127.0.0.1:$P/callbacks" -u clickatell:callback-password-16+ \
    -H 'Content-Type: application/json' -d "$SEALED"
  wait $CL || fail "$lang" "the client did not end after the callback"
  grep -q "^callback .*Yes, that was me ($lang)" "$WORK/$lang.out" || fail "$lang" "the callback was not received decrypted"
  grep -q '^refused: ' "$WORK/$lang.out" || fail "$lang" "the forgery was not reported"
  echo "clients: $lang sent a message through the gateway and verified its forwarded callback"
done
