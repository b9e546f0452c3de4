#!/usr/bin/env bash
# bench/ratelimit.sh: do the rate limits admit what they promise, across
# replicas and through a Redis outage, and does a flood of distinct keys
# keep the gateway's memory bounded? One fast backend, one Redis and three
# gateways with the same routes:
#
#   local   header:X-API-Key 100/s burst 20, each gateway its own buckets
#   global  header:X-API-Key 100/s burst 20, in Redis, on_redis_error local,
#           replicas 3
#   keys    header:X-API-Key 10/s burst 5, max_keys 100000
#
# Steps (paced load from bench/pace, which sends at a fixed rate):
#
#   a. local:   1,000/s for 10 s at gateway 1, one key: want 1020 ± 2%
#   b. global:  1,000/s for 10 s over the three gateways, one key: want
#               1020 ± 5% in total
#   c. outage:  500/s for 12 s over the three gateways' global route while
#               Redis is killed at 3 s, started again (empty) at 6 s,
#               paused (SIGSTOP) at 9 s and resumed at 11 s; per 3 s phase:
#               statuses (no 5xx) and p99, then each gateway's Redis metrics
#   d. keys:    wrk with a new X-API-Key on every request at gateway 1's
#               keys route for BENCH_KEYS_DURATION: requests (= distinct
#               keys), the gateway's resident memory every 10 s, and the
#               entry's keys and evictions in /admin/limits
#
# A benchmark, not a test: it prints what it measured and never fails on
# numbers. Run from anywhere; it cd's to the repository root.
#
# Knobs (environment):
#   BENCH_KEYS_DURATION   wrk duration of step d, Ns or Nm       (default 60s)
#   BENCH_PORT_BASE       first port tried when picking ports    (default 18280)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

KEYS_DURATION=${BENCH_KEYS_DURATION:-60s}
PORT_BASE=${BENCH_PORT_BASE:-18280}

# shellcheck source=bench/lib.sh
source bench/lib.sh

scripts/deps.sh wrk=wrk curl=curl jq=jq redis-server=redis-server redis-cli=redis-tools >&2
log "building bin/gateway, bench/backend and bench/pace"
make -s build >&2
go build -o "$TMP/backend" ./bench/backend
go build -o "$TMP/pace" ./bench/pace

REDIS_PORT="" REDIS_PID=""
GW=() ADMIN=() GW_PID=()

# seconds turns 60s or 2m into whole seconds.
seconds() {
  case $1 in
    *m) echo $((${1%m} * 60)) ;;
    *s) echo "${1%s}" ;;
    *) echo "$1" ;;
  esac
}

# start_redis runs redis-server on REDIS_PORT (no persistence: a restart
# starts empty) and waits until it answers PING.
start_redis() {
  local i
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >>"$TMP/redis.log" 2>&1 &
  REDIS_PID=$!; PIDS+=("$REDIS_PID")
  for ((i = 0; i < 100; i++)); do
    [[ $(redis-cli -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] && return 0
    kill -0 "$REDIS_PID" 2>/dev/null || { tail -n 20 "$TMP/redis.log" >&2; die "redis-server exited during startup"; }
    sleep 0.05
  done
  die "redis-server did not answer PING within ~5s"
}

# stop_redis kills redis-server (SIGTERM), waits for it and forgets its pid.
stop_redis() {
  local pid keep=()
  kill "$REDIS_PID" 2>/dev/null || true
  wait "$REDIS_PID" 2>/dev/null || true
  for pid in "${PIDS[@]}"; do [[ $pid == "$REDIS_PID" ]] || keep+=("$pid"); done
  PIDS=("${keep[@]}")
}

# sleep_until T0 AT sleeps until AT seconds after T0 (date +%s.%N).
sleep_until() {
  sleep "$(awk -v t0="$1" -v at="$2" -v now="$(date +%s.%N)" 'BEGIN { d = t0 + at - now; print (d > 0 ? d : 0) }')"
}

# start_gateway runs gateway number $1 with its own listen and admin ports.
start_gateway() {
  local n=$1 pid
  pick_port; GW[n]=$PICKED
  pick_port; ADMIN[n]=$PICKED
  cat >"$TMP/gateway$n.yaml" <<EOF
server: {listen: "127.0.0.1:${GW[n]}"}
admin: {listen: "127.0.0.1:${ADMIN[n]}"}
redis: {addr: "127.0.0.1:$REDIS_PORT", timeout: 25ms}
pools:
  backend: {backends: ["127.0.0.1:$BACKEND"]}
routes:
  - name: local
    match: {path_prefix: /local}
    pool: backend
    rate_limit: {key: header:X-API-Key, rate: 100/s, burst: 20}
  - name: global
    match: {path_prefix: /global}
    pool: backend
    rate_limit: {key: header:X-API-Key, rate: 100/s, burst: 20, scope: global, on_redis_error: local, replicas: 3}
  - name: keys
    match: {path_prefix: /keys}
    pool: backend
    rate_limit: {key: header:X-API-Key, rate: 10/s, burst: 5, max_keys: 100000}
EOF
  bin/gateway run -config "$TMP/gateway$n.yaml" -log-level info >"$TMP/gateway$n.log" 2>&1 &
  pid=$!; PIDS+=("$pid"); GW_PID[n]=$pid
  wait_http "gateway $n" "$pid" "http://127.0.0.1:${ADMIN[n]}/readyz" "$TMP/gateway$n.log"
}

# urls prints the comma-separated URLs of PATH on every gateway.
urls() {
  local n out=""
  for n in 1 2 3; do out+="${out:+,}http://127.0.0.1:${GW[n]}$1"; done
  echo "$out"
}

# admitted reads "admitted N" from a pace output.
admitted() { awk '$1 == "admitted" { print $2 }' "$1"; }

# mem prints gateway 1's resident memory (VmRSS) and, for comparison, the
# Go heap in use from its /metrics.
mem() {
  printf '%s  (Go heap in use %s)' "$(awk '/^VmRSS/ { print $2, $3 }' "/proc/${GW_PID[1]}/status")" \
    "$(curl -fsS "http://127.0.0.1:${ADMIN[1]}/metrics" | awk '$1 == "go_memstats_heap_inuse_bytes" { printf "%.1f MB", $2 / 1e6 }')"
}

# within prints how far GOT is from WANT, and whether within PCT %.
within() {
  awk -v got="$1" -v want="$2" -v pct="$3" 'BEGIN {
    d = 100 * (got - want) / want
    printf "%+.1f%%, %s\n", d, (d <= pct && d >= -pct) ? "within" : "OUTSIDE"
  }'
}

# ------------------------------------------------------------------- steps

step_local() {
  local got
  log "a. local: 1000/s for 10s at gateway 1 /local"
  "$TMP/pace" -url "http://127.0.0.1:${GW[1]}/local/predict" -rate 1000 -duration 10s \
    -header 'X-API-Key: team-a' >"$TMP/a.txt"
  got=$(admitted "$TMP/a.txt")
  echo "== a. local: 100/s burst 20, one key at 1,000/s for 10 s on one gateway"
  sed '/./s/^/   /' "$TMP/a.txt"
  echo "   RESULT local admitted $got, want 1020 ± 2% ($(within "$got" 1020 2))"
  echo
}

step_global() {
  local got
  log "b. global: 1000/s for 10s over three gateways /global"
  "$TMP/pace" -url "$(urls /global/predict)" -rate 1000 -duration 10s \
    -header 'X-API-Key: team-b' >"$TMP/b.txt"
  got=$(admitted "$TMP/b.txt")
  echo "== b. global: 100/s burst 20 in Redis, one key at 1,000/s for 10 s over three gateways"
  sed '/./s/^/   /' "$TMP/b.txt"
  echo "   RESULT global admitted $got in total, want 1020 ± 5% ($(within "$got" 1020 5))"
  echo
}

# step_outage paces the global route while this shell, on the side, stops
# Redis, starts it again, pauses it and resumes it.
step_outage() {
  local pace_pid t0 n
  log "c. redis outage: 500/s for 12s over three gateways /global (kill 3s, start 6s, STOP 9s, CONT 11s)"
  "$TMP/pace" -url "$(urls /global/predict)" -rate 500 -duration 12s -phases 3s,3s,3s,3s \
    -header 'X-API-Key: team-c' >"$TMP/c.txt" &
  pace_pid=$!; PIDS+=("$pace_pid")
  t0=$(date +%s.%N)
  sleep_until "$t0" 3; stop_redis
  log "   t=3s redis killed"
  sleep_until "$t0" 6; start_redis
  log "   t=6s redis started again (empty) on port $REDIS_PORT"
  sleep_until "$t0" 9; kill -STOP "$REDIS_PID"
  log "   t=9s redis paused (SIGSTOP)"
  sleep_until "$t0" 11; kill -CONT "$REDIS_PID"
  log "   t=11s redis resumed (SIGCONT)"
  wait "$pace_pid" || true
  echo "== c. Redis outage: one key at 500/s for 12 s over three gateways' global route"
  echo "   redis killed at 3 s, started again (empty) at 6 s, paused at 9 s, resumed at 11 s"
  echo "   (per phase, with Redis: 20 + 100/s x 3 s = 320 admitted; on the local fallback"
  echo "   each gateway has 33.3/s burst 6.7, so about the same in total; no 5xx anywhere)"
  sed '/./s/^/   /' "$TMP/c.txt"
  echo
  for n in 1 2 3; do
    printf '   gateway %d: %s\n' "$n" "$(curl -fsS "http://127.0.0.1:${ADMIN[n]}/metrics" |
      awk '/^sluice_ratelimit_redis_(up|errors_total)[ {]/ { printf "%s %s  ", $1, $2 }')"
  done
  for n in 1 2 3; do
    printf '   gateway %d /admin/limits global: %s\n' "$n" "$(curl -fsS "http://127.0.0.1:${ADMIN[n]}/admin/limits" |
      jq -c '{redis: .redis, global: (.routes[] | select(.route == "global") | .rate_limits[0] |
        {keys, limited, redis_errors, fallback_decisions, fallback})}')"
  done
  for n in 1 2 3; do
    grep -i 'redis' "$TMP/gateway$n.log" | sed "s/^/   gateway $n log: /" || true
  done
  echo
}

# step_keys floods gateway 1's keys route with a new key per request and
# samples the gateway's resident memory.
step_keys() {
  local secs t reqs rss0 rss1
  secs=$(seconds "$KEYS_DURATION")
  log "d. distinct keys: wrk -t2 -c32 -d$KEYS_DURATION at gateway 1 /keys, a new X-API-Key per request"
  cat >"$TMP/keys.lua" <<'EOF'
-- A new X-API-Key on every request: the thread's number and a counter.
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
local n = 0
function request()
  n = n + 1
  return wrk.format(nil, nil, { ["X-API-Key"] = "key-" .. tid .. "-" .. n })
end
EOF
  echo "== d. distinct keys: wrk -t2 -c32 -d$KEYS_DURATION, a new X-API-Key per request, 10/s burst 5, max_keys 100000"
  rss0=$(awk '/^VmRSS/ { print $2 }' "/proc/${GW_PID[1]}/status")
  printf '   RSS gateway 1 t=%6s  %s\n' before "$(mem)"
  wrk -t2 -c32 -d"$KEYS_DURATION" --latency -s "$TMP/keys.lua" "http://127.0.0.1:${GW[1]}/keys/predict" >"$TMP/d.txt" 2>&1 &
  WRK_PID=$!
  for ((t = 10; t < secs; t += 10)); do
    sleep 10
    printf '   RSS gateway 1 t=%5ds  %s\n' "$t" "$(mem)"
  done
  wait "$WRK_PID" || log "WARNING: wrk exited non-zero"
  WRK_PID=""
  rss1=$(awk '/^VmRSS/ { print $2 }' "/proc/${GW_PID[1]}/status")
  printf '   RSS gateway 1 t=%6s  %s\n' after "$(mem)"
  parse_wrk "$TMP/d.txt" >"$TMP/d.kv"
  reqs=$(field "$TMP/d.kv" reqs)
  echo "   requests sent (= distinct keys): $reqs  ($(field "$TMP/d.kv" rps) req/s, p50 $(field "$TMP/d.kv" p50) ms, p99 $(field "$TMP/d.kv" p99) ms, non-2xx $(field "$TMP/d.kv" non2xx), socket errors $(field "$TMP/d.kv" sock))"
  echo "   /admin/limits keys route: $(curl -fsS "http://127.0.0.1:${ADMIN[1]}/admin/limits" |
    jq -c '.routes[] | select(.route == "keys") | .rate_limits[0] | {keys, evicted, limited}')"
  echo "   RESULT keys: $reqs distinct keys, RSS grew $(( (rss1 - rss0) / 1024 )) MB ($(( rss0 / 1024 )) -> $(( rss1 / 1024 )) MB); want bounded: max_keys 100000 x ~300 B is ~30 MB of buckets"
}

main() {
  pick_port; BACKEND=$PICKED
  "$TMP/backend" -listen "127.0.0.1:$BACKEND" >"$TMP/backend.log" 2>&1 &
  PIDS+=("$!")
  pick_port; REDIS_PORT=$PICKED
  start_redis
  # The backend has no /health; any path answers 200.
  wait_http backend "${PIDS[0]}" "http://127.0.0.1:$BACKEND/" "$TMP/backend.log"
  start_gateway 1
  start_gateway 2
  start_gateway 3

  echo
  echo "machine: $(nproc) CPUs, kernel $(uname -r); redis $(redis-server --version | awk '{ print $3 }'); three gateways, one backend"
  echo
  step_local
  step_global
  step_outage
  step_keys
}

main "$@"
