#!/usr/bin/env bash
# The IoT gateway end to end, everything on loopback (crates/mote-gateway, docs/iot-gateway.md):
#  1. a private mosquitto broker (own config, own port, persistence on) and `mote gateway
#     ingest` (QoS 1, persistent session);
#  2. the simulator publishes a day with two faults (bedroom 31 °C for 2 h, bathroom 85 % RH
#     for 3 h) while the test kills the gateway (SIGKILL) and restarts it, then restarts the
#     broker: every reading the broker acknowledged must end up stored, once;
#  3. `mote gateway serve` answers POST /ask in English and Chinese with
#     Qwen2.5-Coder-0.5B-Instruct: the answer names bedroom and bathroom and no other room,
#     every number in it appears in a tool result, and find_anomalies agrees with the
#     anomalies recomputed here from the raw rows;
#  4. a fault-free day: the answer is "none".
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/test.d/serve-helpers.bash

MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
[ -x "$MOSQUITTO" ] || { echo "mosquitto is missing: run scripts/setup.sh test" >&2; exit 1; }
[ -x "$MOTE_BIN" ] || { echo "missing $MOTE_BIN: build with cargo build --release" >&2; exit 1; }
MODEL=$MOTE_MODELS/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
[ -f "$MODEL" ] || { echo "missing $MODEL: run scripts/fetch-models.sh qwen" >&2; exit 1; }

work=out/gateway
rm -rf "$work"; mkdir -p "$work/broker"
BROKER_PID="" INGEST_PID="" GW_PID=""
cleanup() {
  for p in $GW_PID $INGEST_PID $BROKER_PID; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

BPORT=$(free_port)
cat > "$work/mosquitto.conf" <<EOF
listener $BPORT 127.0.0.1
allow_anonymous true
user $(id -un)
persistence true
persistence_location $PWD/$work/broker/
autosave_interval 1
max_queued_messages 100000
log_dest file $PWD/$work/mosquitto.log
EOF

wait_port() { # wait_port PORT: until something listens (10 s)
  for _ in $(seq 1 100); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 0.2)" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2; return 1
}
start_broker() { "$MOSQUITTO" -c "$work/mosquitto.conf" & BROKER_PID=$!; wait_port "$BPORT"; }
start_ingest() { # start_ingest DB CLIENT_ID LOG
  "$MOTE_BIN" gateway ingest --broker "127.0.0.1:$BPORT" --db "$1" --client-id "$2" >>"$3" 2>&1 & INGEST_PID=$!
}
wait_subscribed() { # wait_subscribed LOG
  for _ in $(seq 1 100); do grep -q "subscribed to home" "$1" && return 0; sleep 0.1; done
  echo "the ingest did not subscribe:" >&2; cat "$1" >&2; return 1
}
count() { python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from readings').fetchone()[0])" "$1"; }
wait_count() { # wait_count DB N: until the store holds N readings (30 s)
  local n=0
  for _ in $(seq 1 300); do n=$(count "$1"); [ "$n" -ge "$2" ] && return 0; sleep 0.1; done
  echo "the store holds $n readings, expected $2" >&2; return 1
}

echo "== broker on 127.0.0.1:$BPORT, ingest, a day with two faults, gateway killed and broker restarted"
start_broker
start_ingest "$work/faults.db" gw-faults "$work/ingest.log"
wait_subscribed "$work/ingest.log"
"$MOTE_BIN" gateway simulate --broker "127.0.0.1:$BPORT" --date 2026-12-01 --seed 7 --speed 7200 \
  --fault bedroom:temperature=31@14:00+2h --fault bathroom:humidity=85@06:00+3h \
  >"$work/acked.txt" 2>"$work/simulate.log" & SIM_PID=$!
sleep 3
kill -KILL "$INGEST_PID"; wait "$INGEST_PID" 2>/dev/null || true
echo "gateway killed with $(count "$work/faults.db") readings stored"
sleep 1
start_ingest "$work/faults.db" gw-faults "$work/ingest.log"
sleep 2
kill -TERM "$BROKER_PID"; wait "$BROKER_PID" 2>/dev/null || true
echo "broker stopped with $(count "$work/faults.db") readings stored"
sleep 1
start_broker
wait "$SIM_PID" || { cat "$work/simulate.log" >&2; exit 1; }
cat "$work/simulate.log"
acked=$(cat "$work/acked.txt")
[ "$acked" = 2880 ] || { echo "the broker acknowledged $acked of 2880 readings" >&2; exit 1; }
wait_count "$work/faults.db" "$acked"
echo "stored $(count "$work/faults.db") of $acked acknowledged readings"
grep -q "reconnected" "$work/ingest.log" || { echo "the ingest never reconnected:" >&2; cat "$work/ingest.log" >&2; exit 1; }
kill "$INGEST_PID"; wait "$INGEST_PID" 2>/dev/null || true; INGEST_PID=""

echo "== a fault-free day"
start_ingest "$work/quiet.db" gw-quiet "$work/ingest-quiet.log"
wait_subscribed "$work/ingest-quiet.log"
"$MOTE_BIN" gateway simulate --broker "127.0.0.1:$BPORT" --date 2026-12-02 --seed 8 --speed 0 >/dev/null 2>>"$work/simulate.log"
wait_count "$work/quiet.db" 2880
kill "$INGEST_PID"; wait "$INGEST_PID" 2>/dev/null || true; INGEST_PID=""
kill -TERM "$BROKER_PID"; wait "$BROKER_PID" 2>/dev/null || true; BROKER_PID=""

echo "== questions over HTTP (POST /ask) and the command line"
PORT=$(free_port)
"$MOTE_BIN" gateway serve --db "$work/faults.db" --model "$MODEL" --port "$PORT" >"$work/serve.log" 2>&1 & GW_PID=$!
for _ in $(seq 1 300); do
  python3 -c "import urllib.request,sys; urllib.request.urlopen(f'http://127.0.0.1:{sys.argv[1]}/health', timeout=1)" "$PORT" 2>/dev/null && break
  kill -0 "$GW_PID" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
  sleep 0.2
done
ask_http() { # ask_http QUESTION OUT
  python3 - "$PORT" "$1" "$2" <<'PY'
import json, sys, urllib.request
port, q, out = sys.argv[1:]
req = urllib.request.Request(f"http://127.0.0.1:{port}/ask", json.dumps({"question": q}).encode(), {"Content-Type": "application/json"})
open(out, "w").write(urllib.request.urlopen(req, timeout=300).read().decode())
PY
}
ask_http "Which room's temperature or humidity was abnormal today?" "$work/ask-en.json"
ask_http "今天哪个房间的温度或湿度异常？" "$work/ask-zh.json"
kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true; GW_PID=""
"$MOTE_BIN" gateway ask --db "$work/quiet.db" --model "$MODEL" --json \
  "Which room's temperature or humidity was abnormal today?" >"$work/ask-quiet.json"

python3 scripts/test.d/gateway_check.py "$work"
