# Shared by the scripts in scripts/test.d that run `mote serve` (sourced, not run: test.sh
# runs only *.sh). Starts the server on a free loopback port and stops it on exit.
#   start_server LOGFILE ARGS...   sets SERVER_PID and PORT, waits until /health answers
#   stop_server                    SIGTERM, then checks the server exited 0 (graceful)

MOTE_BIN=${MOTE_BIN:-target/release/mote}
MOTE_MODELS=${MOTE_MODELS:-models}
SERVER_PID=""

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_server() {
  local log=$1; shift
  [ -x "$MOTE_BIN" ] || { echo "missing $MOTE_BIN: build with cargo build --release" >&2; return 1; }
  PORT=$(free_port)
  "$MOTE_BIN" serve "$@" --host 127.0.0.1 --port "$PORT" >"$log" 2>&1 &
  SERVER_PID=$!
  trap 'kill_server' EXIT
  for _ in $(seq 1 300); do
    if python3 - "$PORT" <<'PY' 2>/dev/null; then return 0; fi
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=1).read()
PY
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited early:" >&2; cat "$log" >&2; return 1; }
    sleep 0.2
  done
  echo "server did not come up in 60 s:" >&2; cat "$log" >&2
  return 1
}

kill_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}

stop_server() {
  local pid=$SERVER_PID rc=0
  SERVER_PID=""
  kill -TERM "$pid"
  # A graceful shutdown ends in-flight work and exits 0 within a few seconds.
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "server still running 10 s after SIGTERM" >&2
    kill -KILL "$pid"; return 1
  fi
  wait "$pid" || rc=$?
  [ "$rc" = 0 ] || { echo "server exited with $rc after SIGTERM" >&2; return 1; }
}
