#!/usr/bin/env bash
# Builds the gateway's OCI image from deploy/Containerfile without pulling anything from a
# container registry: lays out target/image/rootfs with the oneseal binary, exactly the shared
# libraries it links (from ldd), CA certificates and a passwd/group naming the non-root user,
# then builds the Containerfile with buildah (or docker/podman, whichever is found first).
#
# Usage: deploy/build-image.sh [--binary PATH] [--tag NAME]
#   --binary PATH  use this oneseal binary instead of `cargo build --release`
#   --tag NAME     the image's name (default oneseal:latest)
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=""
TAG="oneseal:latest"
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) BIN=$2; shift 2 ;;
    --tag) TAG=$2; shift 2 ;;
    *) echo "build-image: unknown argument $1 (see the comment at the top)" >&2; exit 2 ;;
  esac
done
if [ -z "$BIN" ]; then
  cargo build --release --locked -p oneseal-cli
  BIN=target/release/oneseal
fi
[ -x "$BIN" ] || { echo "build-image: no executable at $BIN" >&2; exit 2; }

CTX=target/image
ROOT=$CTX/rootfs
rm -rf "$CTX"
mkdir -p "$ROOT/usr/local/bin" "$ROOT/etc/ssl/certs" "$ROOT/etc/oneseal" "$ROOT/var/lib/oneseal" "$ROOT/tmp"
install -m 0755 "$BIN" "$ROOT/usr/local/bin/oneseal"
# The libraries it links, at the paths the dynamic loader looks for them.
for lib in $(ldd "$BIN" | grep -o '/[^ ]*' | sort -u); do
  mkdir -p "$ROOT$(dirname "$lib")"
  cp -L "$lib" "$ROOT$lib"
done
CA=/etc/ssl/certs/ca-certificates.crt
[ -f "$CA" ] || { echo "build-image: no CA bundle at $CA (Debian: apt-get install ca-certificates)" >&2; exit 1; }
cp -L "$CA" "$ROOT$CA"
printf 'root:x:0:0:root:/:/nonexistent\noneseal:x:10001:10001:oneseal:/var/lib/oneseal:/nonexistent\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\noneseal:x:10001:\n' >"$ROOT/etc/group"
# Owned by the non-root user: the spool (a volume in Kubernetes) and a scratch /tmp.
chmod 0700 "$ROOT/var/lib/oneseal"
chmod 1777 "$ROOT/tmp"
cp deploy/Containerfile "$CTX/Containerfile"

if command -v buildah >/dev/null 2>&1; then
  buildah bud --quiet --isolation chroot -f "$CTX/Containerfile" -t "$TAG" "$CTX" >/dev/null
elif command -v podman >/dev/null 2>&1; then
  podman build -f "$CTX/Containerfile" -t "$TAG" "$CTX"
elif command -v docker >/dev/null 2>&1; then
  docker build -f "$CTX/Containerfile" -t "$TAG" "$CTX"
else
  echo "build-image: needs buildah, podman or docker (Debian: apt-get install buildah)" >&2; exit 1
fi
echo "built image $TAG"
