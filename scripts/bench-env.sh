# Shared set-up of the gateway benchmarks (scripts/load.sh, scripts/clevertap_load.sh); sourced,
# from the repository root. Installs what is missing (test prerequisites, wrk), builds the
# release binary and the fake upstream, and provides:
#   BIN, UP, NGINX   oneseal, examples/fake_upstream, nginx
#   WORK, PIDS       a scratch directory and the background processes, both cleaned up at exit
#   port, wait_port  a free loopback port; wait until something listens on one
#   start_moto UP_ARGS...   moto (KMS) and the fake upstream; sets MOTO, UPP, KEY (a new KMS
#                    key) and exports the AWS settings that point at moto
bash scripts/setup-test-env.sh
# wrk (the load generator) and nginx (load.sh's reference proxy), from Debian.
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
if [ ${#missing[@]} -gt 0 ]; then
  echo "$(basename "$0"): installing ${missing[*]} (Debian packages)" >&2
  apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet -p oneseal-cli
cargo build --release --quiet --example fake_upstream
BIN=target/release/oneseal
UP=target/release/examples/fake_upstream

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing on port $1" >&2; exit 1; }

start_moto() {
  MOTO=$(port); UPP=$(port)
  python3 -m moto.server -H 127.0.0.1 -p "$MOTO" >/dev/null 2>&1 & PIDS+=($!)
  "$UP" "$UPP" "$@" 2>/dev/null & PIDS+=($!)
  wait_port "$MOTO"; wait_port "$UPP"
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
  export AWS_ENDPOINT_URL_KMS="http://127.0.0.1:$MOTO" AWS_EC2_METADATA_DISABLED=true
  KEY=$(python3 -c "import boto3; print(boto3.client('kms').create_key()['KeyMetadata']['Arn'])")
  test -n "$KEY"
}
