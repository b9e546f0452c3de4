# shellcheck shell=bash
# bench/lib.sh: what the benchmark scripts share: process lifecycle (every
# process started is stopped on exit or interrupt), free ports, readiness
# waits, and running and reading wrk. Source it after setting PORT_BASE:
#
#   PORT_BASE=18080
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# It creates $TMP (removed on exit) and sets the traps. Scripts append the
# pids of long-running processes to PIDS.

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
PIDS=()      # every long-running process we started, killed on exit
WRK_PID=""   # the wrk now running, if any
# Picks come from here up (globals, so no subshell is needed and two picks
# never return the same port).
NEXT_PORT=$PORT_BASE

log() { printf '==> %s\n' "$*" >&2; }

die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

# Stop one process: TERM, wait up to ~5s, then KILL it and its children
# (a KILLed nginx master would otherwise leave its workers behind).
stop_pid() {
  local pid=$1 kids i
  kill -0 "$pid" 2>/dev/null || return 0
  kids=$(children_of "$pid")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    # shellcheck disable=SC2086
    kill -KILL "$pid" $kids 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  set +e   # best effort: one failing step must not skip the rest
  (( rc > 128 )) && log "interrupted, stopping everything"
  if [[ -n $WRK_PID ]]; then { kill -KILL "$WRK_PID"; wait "$WRK_PID"; } 2>/dev/null; fi
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  if [[ -n ${BENCH_RAW_DIR:-} ]]; then
    mkdir -p "$BENCH_RAW_DIR" || true
    cp "$TMP"/*.txt "$TMP"/*.log "$TMP"/*.conf "$TMP"/*.yaml "$BENCH_RAW_DIR"/ 2>/dev/null || true
  fi
  rm -rf "$TMP"
  exit "$rc"
}

# port_free, pick_port and wait_http, shared with the demos.
# shellcheck source=scripts/net.sh
source scripts/net.sh

# Runs wrk with ARGS, output to FILE. wrk runs in the background and we wait
# for it, because bash defers traps until a foreground child exits: an
# interrupt must not wait for a 10s run to finish. Returns wrk's status.
run_wrk() {
  local out=$1 rc=0
  shift
  wrk "$@" >"$out" 2>&1 &
  WRK_PID=$!
  wait "$WRK_PID" || rc=$?
  WRK_PID=""
  return "$rc"
}

# Turns wrk output into "key value" lines: rps reqs p50 p99 (ms) non2xx sock.
# Latencies are converted to ms whatever unit wrk chose (us, ms, s, m, h).
parse_wrk() {
  awk '
    function ms(v) {
      if (v ~ /us$/) return v / 1000
      if (v ~ /ms$/) return v + 0
      if (v ~ /s$/)  return v * 1000
      if (v ~ /m$/)  return v * 60000
      if (v ~ /h$/)  return v * 3600000
      return v + 0
    }
    BEGIN { rps = "nan"; reqs = "nan"; p50 = "nan"; p99 = "nan"; non2xx = 0; sock = 0 }
    /^Requests\/sec:/                 { rps = $2 }
    / requests in /                   { reqs = $1 }
    /^[ \t]*50%[ \t]/                 { p50 = ms($2) }
    /^[ \t]*99%[ \t]/                 { p99 = ms($2) }
    /Non-2xx or 3xx responses:/       { non2xx = $NF }
    /Socket errors:/ {
      # "Socket errors: connect 0, read 0, write 0, timeout 0"
      for (i = 3; i <= NF; i += 2) { n = $(i + 1); sub(/,/, "", n); sock += n }
    }
    END {
      printf "rps %s\nreqs %s\np50 %s\np99 %s\nnon2xx %s\nsock %s\n", rps, reqs, p50, p99, non2xx, sock
    }' "$1"
}

# Value of KEY in parse_wrk output FILE.
field() { awk -v k="$2" '$1 == k { print $2 }' "$1"; }

trap cleanup EXIT
# Background jobs of a non-interactive shell ignore SIGINT, so cleanup must
# run on INT/TERM too; exiting triggers the EXIT trap.
trap 'exit 130' INT
trap 'exit 143' TERM
