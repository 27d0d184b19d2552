#!/usr/bin/env bash
# Gateway benchmark (not a CI test). Everything on loopback, on this machine:
#   1. 1500 concurrent clients (wrk) POST one-message One API requests straight to a fake
#      upstream that answers at once, then the same load through `oneseal gateway` (KMS: moto),
#      then through nginx as a plain reverse proxy (no encryption, no logs): what a tuned
#      proxy in C gets from this machine for the same two hops;
#   2. an open loop: a fixed 2 000 requests/s for 30 s (oha -q, scheduled by the clock with
#      --latency-correction, so a slow answer delays no later request: no coordinated
#      omission), straight, through the gateway and through nginx: the latency the gateway
#      adds at a steady rate (p50/p99/p99.9), and CPU-seconds per 1 000 requests of the
#      gateway and of nginx (from /proc) at that same rate;
#   3. RSS of the gateway once it has served at least 100 000 requests;
#   4. a callback flood on the public side with the durable spool on (fsync per callback).
# Prints the figures and the ratios, all from this one run.
#
#   scripts/load.sh [SECONDS per run, default 15]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-15}
CONNS=1500
RATE=2000
OPEN_SECS=${OPEN_SECS:-30}

source scripts/bench-env.sh
# oha (the open-loop generator) from crates.io, pinned, into target/tools.
OHA=$(command -v oha || echo target/tools/bin/oha)
[ -x "$OHA" ] || cargo install --quiet --locked oha --version 1.16.0 --root target/tools
start_moto
APP=$(port); PUB=$(port); ADM=$(port)

cat > "$WORK/oneseal.toml" <<EOF
kms_key_id = "$KEY"
[gateway]
app_listen = "127.0.0.1:$APP"
public_listen = "127.0.0.1:$PUB"
admin_listen = "127.0.0.1:$ADM"
upstream = "http://127.0.0.1:$UPP"
spool_dir = "$WORK/spool"
max_in_flight = 4096
[gateway.callbacks]
forward_to = "http://127.0.0.1:$UPP/whatsapp/callbacks"
username = "clickatell"
password_env = "LOAD_CB_PASSWORD"
EOF
LOAD_CB_PASSWORD=load-callback-password RUST_LOG=warn "$BIN" gateway --config "$WORK/oneseal.toml" 2>"$WORK/gateway.log" & GW=$!; PIDS+=($GW)
wait_port "$ADM"

cat > "$WORK/message.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"messages":[{"channel":"whatsapp","to":"2799900001","content":"Your one-time PIN is 482913. It expires in 5 minutes.","clientMessageId":"c1"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer load-test"
EOF

# wrk's summary -> "rps p50_ms p99_ms errors requests"
run() {
  local url=$1 conns=$2 dur=$3 script=$4 out
  out=$(wrk -t2 -c"$conns" -d"${dur}s" --timeout 10s --latency -s "$script" "$url")
  echo "$out" > "$WORK/last.txt"
  python3 - "$WORK/last.txt" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def ms(label):
    m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", t, re.M)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
reqs = int(re.search(r"(\d+) requests in", t).group(1))
errs = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", t))
non2 = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
errs += int(non2.group(1)) if non2 else 0
print(f"{rps:.0f} {ms(50):.2f} {ms(99):.2f} {errs} {reqs}")
PY
}

# oha at a fixed rate -> "p50_ms p99_ms p999_ms errors requests"
openloop() {
  local url=$1
  "$OHA" -z "${OPEN_SECS}s" -q "$RATE" -c 200 --latency-correction --no-tui --output-format json \
    -m POST -H 'Content-Type: application/json' -H 'Authorization: Bearer load-test' \
    -d "$BODY" "$url" > "$WORK/open.json"
  python3 - "$WORK/open.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
p = r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
ok = sum(v for k, v in codes.items() if k.startswith("2"))
# Requests still in flight when the run's time is up are cut off by oha, not failed.
errs = sum(v for k, v in r.get("errorDistribution", {}).items() if "deadline" not in k) \
    + sum(v for k, v in codes.items() if not k.startswith("2"))
print(f"{p['p50']*1e3:.2f} {p['p99']*1e3:.2f} {p['p99.9']*1e3:.2f} {errs} {ok + errs}")
PY
}
# CPU-seconds (user + system) the processes $@ and their children have used so far.
cpu() { python3 -c '
import os, sys
tck = os.sysconf("SC_CLK_TCK"); total = 0
for pid in sys.argv[1:]:
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    total += sum(int(x) for x in f[11:15])
print(total / tck)' "$@"; }
BODY='{"messages":[{"channel":"whatsapp","to":"2799900001","content":"Your one-time PIN is 482913. It expires in 5 minutes.","clientMessageId":"c1"}]}'

echo "warming up..." >&2
run "http://127.0.0.1:$UPP/v1/message" 100 2 "$WORK/message.lua" >/dev/null
run "http://127.0.0.1:$APP/v1/message" 100 2 "$WORK/message.lua" >/dev/null
read -r D_RPS D_P50 D_P99 D_ERR D_N < <(run "http://127.0.0.1:$UPP/v1/message" $CONNS "$DUR" "$WORK/message.lua")
read -r G_RPS G_P50 G_P99 G_ERR G_N < <(run "http://127.0.0.1:$APP/v1/message" $CONNS "$DUR" "$WORK/message.lua")
# The reference proxy: nginx, two workers, upstream keep-alive, nothing else.
NGX=$(port)
mkdir -p "$WORK/nginx"
cat > "$WORK/nginx/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 8000; multi_accept on; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx;
  fastcgi_temp_path $WORK/nginx; uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
  upstream up { server 127.0.0.1:$UPP; keepalive 2000; }
  server {
    listen 127.0.0.1:$NGX backlog=4096;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF
"$NGINX" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" 2>/dev/null & PIDS+=($!)
wait_port "$NGX"
run "http://127.0.0.1:$NGX/v1/message" 100 2 "$WORK/message.lua" >/dev/null
read -r N_RPS N_P50 N_P99 N_ERR _ < <(run "http://127.0.0.1:$NGX/v1/message" $CONNS "$DUR" "$WORK/message.lua")

# The open loop: the same one-message request at a fixed rate, each target in turn.
echo "open loop: $RATE requests/s for $OPEN_SECS s, straight, through the gateway, through nginx..." >&2
read -r OD_P50 OD_P99 OD_P999 OD_ERR OD_N < <(openloop "http://127.0.0.1:$UPP/v1/message")
C0=$(cpu "$GW")
read -r OG_P50 OG_P99 OG_P999 OG_ERR OG_N < <(openloop "http://127.0.0.1:$APP/v1/message")
G_CPU=$(python3 -c "print(($(cpu "$GW") - $C0) / max($OG_N, 1) * 1000)")
NGX_PIDS=$(pgrep -f "nginx: (master|worker)" | tr '\n' ' ')
C0=$(cpu $NGX_PIDS)
read -r ON_P50 ON_P99 ON_P999 ON_ERR ON_N < <(openloop "http://127.0.0.1:$NGX/v1/message")
N_CPU=$(python3 -c "print(($(cpu $NGX_PIDS) - $C0) / max($ON_N, 1) * 1000)")

TOTAL=$((G_N + OG_N))
while [ "$TOTAL" -lt 100000 ]; do
  read -r _ _ _ _ N < <(run "http://127.0.0.1:$APP/v1/message" $CONNS 10 "$WORK/message.lua")
  TOTAL=$((TOTAL + N))
done
RSS_KB=$(awk '/VmRSS/ {print $2}' "/proc/$GW/status")
METRICS=$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$ADM/metrics').read().decode())")
GEN=$(echo "$METRICS" | awk '/^oneseal_kms_calls_total\{.*operation="GenerateDataKey".*outcome="ok"/ {s+=$2} END {print s+0}')
SHED=$(echo "$METRICS" | awk '/^oneseal_gateway_shed_total/ {s+=$2} END {print s+0}')
MSGS=$(echo "$METRICS" | awk '/^oneseal_gateway_requests_total\{.*route="\/v1\/message".*status="202"/ {s+=$2} END {print s+0}')

# Callback flood: one platform-encrypted callback (sealed by the independent Python
# implementation with the same KMS key), posted with basic auth, spool fsynced per callback.
python3 - "$WORK/cb.json" "$KEY" <<'PY'
import json, subprocess, sys
plain = {"integrationId": "i", "event": {"moText": [{"channel": "whatsapp", "messageId": "m1", "from": "2799900001",
         "timestamp": 1506607698000, "content": "Hi, please call me back about my claim", "encryptionKey": None}]}}
open(sys.argv[1] + ".plain", "w").write(json.dumps(plain))
import os
out = subprocess.run([sys.executable, "scripts/interop.py", "seal", sys.argv[1] + ".plain", "--suite", "gcm",
                      "--kms-endpoint", os.environ["AWS_ENDPOINT_URL_KMS"], "--kms-key-id", sys.argv[2]],
                     check=True, capture_output=True, text=True).stdout
open(sys.argv[1], "w").write(out)
PY
AUTH=$(printf 'clickatell:load-callback-password' | base64)
python3 - "$WORK/cb.json" "$AUTH" > "$WORK/callback.lua" <<'PY'
import json, sys
body = open(sys.argv[1]).read().strip()
print('wrk.method = "POST"')
print('wrk.body = ' + json.dumps(body))
print('wrk.headers["Content-Type"] = "application/json"')
print(f'wrk.headers["Authorization"] = "Basic {sys.argv[2]}"')
PY
read -r C_RPS C_P50 C_P99 C_ERR C_N < <(run "http://127.0.0.1:$PUB/callbacks" 64 10 "$WORK/callback.lua")
T0=$(date +%s.%N)
for _ in $(seq 1 600); do
  [ -z "$(ls -A "$WORK/spool/incoming" 2>/dev/null)" ] && break; sleep 0.2
done
T1=$(date +%s.%N)
LEFT=$(ls "$WORK/spool/incoming" | wc -l)

python3 - <<PY
d_rps, g_rps, n_rps = $D_RPS, $G_RPS, $N_RPS
print()
print("oneseal gateway benchmark ($(nproc) cores, $(date -u +%F), ${DUR} s per run, $CONNS connections, wrk -t2)")
print(f"| what | straight to the fake upstream | through the gateway | ratio |")
print(f"|---|---|---|---|")
print(f"| throughput (req/s) | {d_rps:.0f} | {g_rps:.0f} | {g_rps/d_rps*100:.0f}% of direct |")
print(f"| p50 latency (ms) | $D_P50 | $G_P50 | {$G_P50-$D_P50:+.1f} ms |")
print(f"| p99 latency at saturation (ms) | $D_P99 | $G_P99 | {$G_P99-$D_P99:+.1f} ms (throughput seen through Little's law; the open loop below is the latency figure) |")
print(f"| errors (socket + non-2xx) | $D_ERR | $G_ERR | budget 0 |")
print(f"| nginx as a plain proxy (no encryption), same load | | {n_rps:.0f} req/s, p99 $N_P99 ms, errors $N_ERR | {n_rps/d_rps*100:.0f}% of direct |")
print(f"| **the gateway's throughput against nginx's** | | | **{g_rps/n_rps*100:.0f}%** (budget >= 50%) |")
print(f"| shed requests | | $SHED | budget 0 |")
# One key seals at most 1000 messages, so ceil(messages / 1000) keys is the least possible.
# Two things add a key: the next key is made ahead of need, and each wrk run ends with up to
# 1 500 requests sealed (a key use spent) but cut off before their 202 (messages counts 202s).
print(f"| GenerateDataKey per 1000 messages | | {$GEN/max($MSGS,1)*1000:.3f} ({$GEN} for {$MSGS} answered 202; least possible {-(-$MSGS//1000)}, plus the key made ahead of need) | budget <= 1 |")
print(f"| gateway RSS after {$TOTAL} requests | | {$RSS_KB/1024:.1f} MiB | budget <= 256 MiB |")
print(f"| callbacks accepted (fsynced), 64 connections | | {$C_RPS:.0f}/s (p99 $C_P99 ms, errors $C_ERR) | budget >= 2000/s |")
drain = $T1 - $T0
print(f"| relay: {$C_N} callbacks decrypted + delivered | | drained {drain:.1f} s after the flood, {$LEFT} left | |")
print()
print(f"Open loop: $RATE requests/s for $OPEN_SECS s (oha -q, --latency-correction), the same request")
print(f"| what | straight | through the gateway | added by the gateway | through nginx |")
print(f"|---|---|---|---|---|")
for name, d, g, n in (("p50 (ms)", $OD_P50, $OG_P50, $ON_P50), ("p99 (ms)", $OD_P99, $OG_P99, $ON_P99), ("p99.9 (ms)", $OD_P999, $OG_P999, $ON_P999)):
    budget = " (budget <= 5 ms)" if name.startswith("p99 ") else ""
    print(f"| {name} | {d:.2f} | {g:.2f} | {g-d:+.2f} ms{budget} | {n:.2f} |")
print(f"| requests, errors | $OD_N, $OD_ERR | $OG_N, $OG_ERR | budget 0 errors | $ON_N, $ON_ERR |")
print(f"| CPU-seconds per 1000 requests | | {$G_CPU:.3f} (the gateway process, encrypting) | | {$N_CPU:.3f} (nginx, plain proxy) |")
print()
PY
