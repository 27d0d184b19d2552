#!/usr/bin/env bash
# The image, tried for real (CI runs this): built with buildah from deploy/Containerfile
# without a registry, from the binary the test suite built; it names a non-root user, has no
# shell, and runs as that user; `oneseal --version` runs in it; a gateway started from it
# (config and local key mounted, the spool on a mounted volume) answers /livez and sends one
# request through to the independent fake platform, encrypted.
#
# The image's root filesystem is run with `chroot --userspec` on buildah's mount of it:
# `buildah run` cannot here (crun finds cgroups in hybrid mode; its chroot isolation cannot
# exec as a non-root user because the storage directory above the mount is 0700).
#
# Usage: deploy/test-image.sh [BINARY]   (default target/debug/oneseal)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/debug/oneseal}
TAG=localhost/oneseal:test
[ -x "$BIN" ] || cargo build --quiet -p oneseal-cli --bin oneseal
command -v buildah >/dev/null || { echo "test-image: buildah is required (scripts/setup-test-env.sh installs it)" >&2; exit 1; }

WORK=$(mktemp -d)
CTR=""
PIDS=()
MOUNTS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  pkill -f "oneseal gateway --config /etc/oneseal/oneseal.toml" 2>/dev/null || true
  sleep 0.2
  for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null || true; done
  [ -n "$CTR" ] && { buildah umount "$CTR" >/dev/null 2>&1; buildah rm "$CTR" >/dev/null 2>&1; } || true
  buildah rmi "$TAG" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "test-image: FAILED: $*" >&2; exit 1; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
  for _ in $(seq 1 100); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}

bash deploy/build-image.sh --binary "$BIN" --tag "$TAG"

user=$(buildah inspect --type image --format '{{.OCIv1.Config.User}}' "$TAG")
[ "$user" = "10001:10001" ] || fail "the image's user is '$user', not 10001:10001"
files=$(buildah inspect --type image --format '{{len .OCIv1.RootFS.DiffIDs}}' "$TAG")
echo "test-image: image user $user, $files layer(s)"

CTR=$(buildah from "$TAG")
ROOT=$(buildah mount "$CTR")
as_image_user() { chroot --userspec=10001:10001 "$ROOT" "$@"; }
ver=$(as_image_user /usr/local/bin/oneseal --version)
case "$ver" in oneseal*) echo "test-image: $ver" ;; *) fail "--version said '$ver'" ;; esac
for sh in /bin/sh /bin/bash /usr/bin/sh /bin/busybox; do
  [ -e "$ROOT$sh" ] && fail "the image has a shell ($sh)"
done
echo "test-image: no shell in the image"

# A fake platform on the host, sharing the local key with the gateway in the image.
mkdir -p "$WORK/etc" "$WORK/spool"
head -c 32 /dev/urandom >"$WORK/etc/local.key"
chown 10001:10001 "$WORK/etc/local.key" "$WORK/spool"
chmod 0600 "$WORK/etc/local.key"
PP=$(port); AP=$(port); PUB=$(port); ADM=$(port)
python3 scripts/fake_platform.py --port "$PP" --local-key "$WORK/etc/local.key" >"$WORK/platform.log" 2>&1 &
PIDS+=($!)
cat >"$WORK/etc/oneseal.toml" <<TOML
[gateway]
app_listen = "127.0.0.1:$AP"
public_listen = "127.0.0.1:$PUB"
admin_listen = "127.0.0.1:$ADM"
upstream = "http://127.0.0.1:$PP"
spool_dir = "/var/lib/oneseal"
TOML
# The config read-only and the spool volume, mounted where the image expects them.
mount --bind "$WORK/etc" "$ROOT/etc/oneseal" && MOUNTS+=("$ROOT/etc/oneseal")
mount -o remount,bind,ro "$ROOT/etc/oneseal"
mount --bind "$WORK/spool" "$ROOT/var/lib/oneseal" && MOUNTS+=("$ROOT/var/lib/oneseal")
env -i ONESEAL_LOCAL_KEY=/etc/oneseal/local.key SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  "$(command -v chroot)" --userspec=10001:10001 "$ROOT" /usr/local/bin/oneseal gateway --config /etc/oneseal/oneseal.toml \
  >"$WORK/gateway.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$ADM/livez" || { cat "$WORK/gateway.log" >&2; fail "no /livez from the gateway in the image"; }
echo "test-image: /livez answered"
gw=$(pgrep -f "oneseal gateway --config /etc/oneseal/oneseal.toml" | head -1)
uid=$(awk '/^Uid:/ {print $2}' "/proc/$gw/status")
[ "$uid" = "10001" ] || fail "the gateway runs as uid $uid, not 10001"
echo "test-image: the gateway runs as uid $uid"
wait_http "http://127.0.0.1:$PP/_records" || fail "the fake platform did not start"
code=$(curl -sS -o "$WORK/answer" -w '%{http_code}' -X POST "http://127.0.0.1:$AP/v1/message" \
  -H 'Authorization: Bearer app-key' -H 'Content-Type: application/json' \
  -d '{"messages":[{"channel":"whatsapp","to":"2799900001","content":"hello from the image"}]}')
[ "$code" = "202" ] || { cat "$WORK/answer" "$WORK/gateway.log" >&2; fail "the app side answered $code"; }
curl -fsS "http://127.0.0.1:$PP/_records" >"$WORK/records"
python3 - "$WORK/records" <<'PY'
import json, sys
recs = json.load(open(sys.argv[1]))
assert len(recs) == 1, recs
r = recs[0]
assert "error" not in r, r
assert "hello from the image" not in json.dumps(r["encrypted"]), "plaintext reached the platform"
assert r["encrypted"]["messages"][0]["encryptionKey"], r
assert r["plain"]["messages"][0]["content"] == "hello from the image", r
print("test-image: the platform got the message encrypted, and it decrypts to the text sent")
PY
echo "test-image: OK"
