#!/usr/bin/env bash
# CleverTap bridge benchmark (issue 13; not a CI test). Everything on loopback, on
# this machine: wrk keeps 1500 connections busy posting CleverTap template payloads (one shared
# header image, a distinct recipient and msgId per request) to `oneseal gateway`'s
# [gateway.clevertap] route; the fake upstream (examples/fake_upstream.rs) answers every
# platform call after 100 ms and is also the media host; KMS is moto. Prints p50/p99 end to
# end, errors and failures, media fetches (must be 1), uploads (one per send), KMS calls.
#
#   scripts/clevertap_load.sh [SECONDS, default 15] [UPSTREAM_DELAY_MS, default 100]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-15}
DELAY=${2:-100}
CONNS=1500

source scripts/bench-env.sh
start_moto "$DELAY"
APP=$(port); PUB=$(port); ADM=$(port)

cat > "$WORK/oneseal.toml" <<EOF
kms_key_id = "$KEY"
[gateway]
app_listen = "127.0.0.1:$APP"
public_listen = "127.0.0.1:$PUB"
admin_listen = "127.0.0.1:$ADM"
upstream = "http://127.0.0.1:$UPP"
public_url = "http://127.0.0.1:$PUB"
spool_dir = "$WORK/spool"
[gateway.clevertap]
username = "clevertap"
password_env = "CT_PASSWORD"
one_api_key_env = "CT_ONE_API_KEY"
dlr_url = "http://127.0.0.1:$UPP/dlr"
imo_url = "http://127.0.0.1:$UPP/imo"
waba_number = "27990000099"
media_hosts = ["127.0.0.1:$UPP"]
media_link_secret_env = "CT_LINK_SECRET"
# The bench posts no platform callbacks to the bridge.
allow_unauthenticated = true
EOF
CT_PASSWORD=ct-bench-password-0123 CT_ONE_API_KEY=bench-key CT_LINK_SECRET=bench-link-secret-0123456789abcdef \
  RUST_LOG=warn "$BIN" gateway --config "$WORK/oneseal.toml" 2>"$WORK/gateway.log" & GW=$!; PIDS+=($GW)
wait_port "$ADM"

AUTH=$(printf 'clevertap:ct-bench-password-0123' | base64)
cat > "$WORK/template.lua" <<EOF
local n = 0
local id = 0
function setup(thread) id = id + 1; thread:set("tid", id) end
function init(args) n = 0 end
function request()
  n = n + 1
  local body = string.format([[{"payloadVersion":0.1,"to":"+2782%02d%05d","wabaNumber":"27990000099","isTemplate":true,"msgId":"bench|%d|%d","template":{"namespace":"statement_ready","languageCode":"en"},"components":[{"type":"header","header":{"type":"image","image":{"mediaURL":"http://127.0.0.1:$UPP/media/header.jpg"}}},{"type":"body","body":{"text":"Hi {{1}}, your statement for {{2}} is ready","parameters":[{"type":"text","text":"Thandi"},{"type":"text","text":"November"}]}},{"type":"button","index":0,"subType":"dynamicUrl","buttonText":"View","parameters":[{"type":"text","text":"s/%d"}]}]}]], tid, n % 100000, tid, n, n)
  return wrk.format("POST", "/clevertap/messages", {["Content-Type"]="application/json", ["Authorization"]="Basic $AUTH"}, body)
end
function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"success"', 1, true) then
    wrk.thread:set("bad", (wrk.thread:get("bad") or 0) + 1)
  end
end
EOF

echo "warming up (100 connections, 2 s)..." >&2
wrk -t2 -c100 -d2s --timeout 10s -s "$WORK/template.lua" "http://127.0.0.1:$PUB" >/dev/null
OUT=$(wrk -t2 -c$CONNS -d"${DUR}s" --timeout 10s --latency -s "$WORK/template.lua" "http://127.0.0.1:$PUB")
echo "$OUT" > "$WORK/wrk.txt"
METRICS=$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$ADM/metrics').read().decode())")
STATS=$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$UPP/_stats').read().decode())")
echo "$METRICS" > "$WORK/metrics.txt"
python3 - "$WORK/wrk.txt" "$WORK/metrics.txt" "$STATS" "$DUR" "$DELAY" "$CONNS" <<'PY'
import json, re, sys
t = open(sys.argv[1]).read()
m = open(sys.argv[2]).read()
stats = json.loads(sys.argv[3])
def ms(label):
    x = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", t, re.M)
    v, u = float(x.group(1)), x.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
def metric(pattern):
    return sum(float(v) for k, v in re.findall(r"^(\S+)\s+([\d.e+]+)$", m, re.M) if re.fullmatch(pattern, k))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
reqs = int(re.search(r"(\d+) requests in", t).group(1))
sock = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", t))
non2 = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
success = metric(r'oneseal_clevertap_requests_total\{kind="template",outcome="success"\}')
failed = metric(r'oneseal_clevertap_requests_total\{.*outcome="(?!success)[^"]*"\}')
gen = metric(r'oneseal_kms_calls_total\{.*operation="GenerateDataKey".*\}')
dec = metric(r'oneseal_kms_calls_total\{.*operation="Decrypt".*\}')
shed = metric(r"oneseal_gateway_shed_total")
uploads = metric(r'oneseal_clevertap_media_uploads_total\{.*\}')
print()
print(f"CleverTap bridge benchmark ({sys.argv[6]} connections, wrk -t2, {sys.argv[4]} s, upstream answers after {sys.argv[5]} ms, 100 KiB shared header image, KMS: moto)")
print("| what | figure | budget |")
print("|---|---|---|")
print(f"| template sends answered | {reqs} ({rps:.0f}/s) | |")
print(f"| p50 / p90 / p99 end to end (ms) | {ms(50):.0f} / {ms(90):.0f} / {ms(99):.0f} | p99 <= 1000 |")
print(f"| socket errors, non-2xx | {sock}, {int(non2.group(1)) if non2 else 0} | 0 |")
print(f"| sends answered success / failure (gateway metrics) | {success:.0f} / {failed:.0f} | all success |")
print(f"| shed (429) | {shed:.0f} | 0 |")
print(f"| media fetches of the header image | {stats['media_fetches']} | 1 |")
print(f"| per-recipient uploads (gateway) / received (upstream) | {uploads:.0f} / {stats['uploads']} | one per send |")
print(f"| KMS GenerateDataKey / Decrypt | {gen:.0f} / {dec:.0f} | |")
PY
