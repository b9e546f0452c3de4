#!/usr/bin/env bash
# bench/shadow.sh: does shadow traffic slow the client? The same primary
# model worker is measured through four routes of one gateway, in
# interleaved rounds under the same wrk load:
#
#   none   no shadow
#   fast   a shadow whose worker (a process of its own) answers as fast
#          as the primary's
#   slow   a shadow whose worker answers 100x slower than the primary's
#   down   a shadow pool whose only backend is not listening
#
# and the primary's p50 and p99 of each are compared with none. The
# shadow workers share the machine's CPUs with the gateway, so on a small
# machine the shadow model's own work shows in both fast and slow; what
# the shadow's slowness alone costs is slow against fast.
# It then prints the shadow report (mirrored, dropped, errors). With
# BENCH_SOAK set, it finally loads the slow route for that long and
# samples the gateway's resident memory, which must stay flat.
#
# A benchmark, not a test: it prints what it measured and never fails on
# numbers. Run from anywhere; it cd's to the repository root.
#
# Knobs (environment):
#   BENCH_DURATION        wrk duration of each measured run      (default 15s)
#   BENCH_CONNS           wrk connections                        (default 8)
#   BENCH_ROUNDS          interleaved rounds of the four routes  (default 3)
#   BENCH_LATENCY         the primary worker's -latency          (default 1ms)
#   BENCH_SHADOW_PERCENT  share of requests mirrored             (default 25)
#   BENCH_SHADOW_MAX_IN_FLIGHT  the shadows' max_in_flight           (default 64)
#   BENCH_SOAK            e.g. 300s: memory soak on the slow route (default off)
#   BENCH_QUIET_STEAL     rounds whose runs all had less hypervisor steal
#                         than this % get a summary of their own (default 5)
#   BENCH_PORT_BASE       first port tried when picking ports    (default 18180)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=${BENCH_DURATION:-15s}
CONNS=${BENCH_CONNS:-8}
ROUNDS=${BENCH_ROUNDS:-3}
LATENCY=${BENCH_LATENCY:-1ms}
PERCENT=${BENCH_SHADOW_PERCENT:-25}
MAX_IN_FLIGHT=${BENCH_SHADOW_MAX_IN_FLIGHT:-64}
SOAK=${BENCH_SOAK:-}
PORT_BASE=${BENCH_PORT_BASE:-18180}
QUIET=${BENCH_QUIET_STEAL:-5}

# shellcheck source=bench/lib.sh
source bench/lib.sh

scripts/deps.sh wrk=wrk curl=curl >&2
log "building bin/gateway and bin/modelworker"
make -s build >&2

# The shadow is 100x slower than the primary: -latency scaled by 100.
slow_latency() {
  awk -v d="$LATENCY" 'BEGIN {
    n = d + 0; u = d; sub(/^[0-9.]+/, "", u)
    printf "%g%s\n", n * 100, u
  }'
}

# steal_ticks is the time the hypervisor gave these CPUs to someone else
# (field 9 of /proc/stat's cpu line): a run with much of it measured the
# neighbours, not the gateway.
steal_ticks() { awk '/^cpu / { print $9 + 0; exit }' /proc/stat; }

# start_worker runs a model worker on a fresh port, left in PICKED. (Not
# in a command substitution: the subshell would keep its pid from PIDS.)
start_worker() {
  local name=$1 model=$2 latency=$3 pid
  pick_port
  bin/modelworker -model "models/$model.json" -listen "127.0.0.1:$PICKED" -latency "$latency" >"$TMP/$name.log" 2>&1 &
  pid=$!; PIDS+=("$pid")
  wait_http "$name" "$pid" "http://127.0.0.1:$PICKED/health" "$TMP/$name.log"
}

main() {
  local primary fast slow down gw admin round route pid start steal
  start_worker primary iris-v1 "$LATENCY"; primary=$PICKED
  start_worker fast iris-v3 "$LATENCY"; fast=$PICKED
  start_worker slow iris-v3 "$(slow_latency)"; slow=$PICKED
  pick_port; down=$PICKED # nothing listens here
  pick_port; gw=$PICKED
  pick_port; admin=$PICKED
  cat >"$TMP/gateway.yaml" <<EOF
server: {listen: "127.0.0.1:$gw"}
admin: {listen: "127.0.0.1:$admin"}
pools:
  primary: {backends: ["127.0.0.1:$primary"]}
  fast: {backends: ["127.0.0.1:$fast"]}
  slow: {backends: ["127.0.0.1:$slow"]}
  down: {backends: ["127.0.0.1:$down"]}
routes:
  - {name: none, match: {path_prefix: /none}, strip_prefix: /none, pool: primary}
  - name: fast
    match: {path_prefix: /fast}
    strip_prefix: /fast
    pool: primary
    shadow: {pool: fast, percent: $PERCENT, max_in_flight: $MAX_IN_FLIGHT, timeout: 2s, compare: {ignore: [model_version]}}
  - name: slow
    match: {path_prefix: /slow}
    strip_prefix: /slow
    pool: primary
    shadow: {pool: slow, percent: $PERCENT, max_in_flight: $MAX_IN_FLIGHT, timeout: 2s, compare: {ignore: [model_version]}}
  - name: down
    match: {path_prefix: /down}
    strip_prefix: /down
    pool: primary
    shadow: {pool: down, percent: $PERCENT, max_in_flight: $MAX_IN_FLIGHT, timeout: 2s}
EOF
  bin/gateway -config "$TMP/gateway.yaml" -log-level error >"$TMP/gateway.log" 2>&1 &
  pid=$!; PIDS+=("$pid")
  wait_http gateway "$pid" "http://127.0.0.1:$admin/readyz" "$TMP/gateway.log"
  cat >"$TMP/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body   = '{"input":[5.9,3.2,4.8,1.8]}'
wrk.headers["Content-Type"] = "application/json"
EOF

  : >"$TMP/results.tsv"
  for ((round = 1; round <= ROUNDS; round++)); do
    for route in none fast slow down; do
      log "round $round/$ROUNDS: $route"
      run_wrk /dev/null -t2 -c"$CONNS" -d2s -s "$TMP/post.lua" "http://127.0.0.1:$gw/$route/predict" || true
      start=$(date +%s.%N) steal=$(steal_ticks)
      run_wrk "$TMP/wrk-$round-$route.txt" -t2 -c"$CONNS" -d"$DURATION" --latency -s "$TMP/post.lua" \
        "http://127.0.0.1:$gw/$route/predict" || log "WARNING: wrk exited non-zero"
      steal=$(awk -v s0="$steal" -v s1="$(steal_ticks)" -v t0="$start" -v t1="$(date +%s.%N)" \
        -v hz="$(getconf CLK_TCK)" -v n="$(nproc)" 'BEGIN { printf "%.1f", 100 * (s1 - s0) / ((t1 - t0) * hz * n) }')
      parse_wrk "$TMP/wrk-$round-$route.txt" >"$TMP/wrk-$round-$route.kv"
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$route" "$(field "$TMP/wrk-$round-$route.kv" rps)" \
        "$(field "$TMP/wrk-$round-$route.kv" p50)" "$(field "$TMP/wrk-$round-$route.kv" p99)" \
        "$(($(field "$TMP/wrk-$round-$route.kv" non2xx) + $(field "$TMP/wrk-$round-$route.kv" sock)))" "$steal" >>"$TMP/results.tsv"
    done
  done

  echo
  echo "machine: $(nproc) CPUs, kernel $(uname -r); primary -latency $LATENCY, shadow $(slow_latency); $PERCENT% mirrored, max_in_flight $MAX_IN_FLIGHT"
  echo "load:    wrk -t2 -c$CONNS -d$DURATION --latency, $ROUNDS interleaved rounds (2s warm-up each)"
  awk -F'\t' -v quiet="$QUIET" '
    function median(k,    n, i, j, t, a) {
      n = cnt[k]; for (i = 1; i <= n; i++) a[i] = v[k, i]
      for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function summary(title, set,    i, m3, m4, m5, b4, b5, f5) {
      print ""; print title
      for (i = 1; i <= 4; i++) {
        m3 = median(set SUBSEP r[i] SUBSEP 3); m4 = median(set SUBSEP r[i] SUBSEP 4); m5 = median(set SUBSEP r[i] SUBSEP 5)
        if (i == 1) { b4 = m4; b5 = m5 }
        if (i == 2) f5 = m5
        printf "%-5s %9.0f req/s  p50 %7.3f ms (%.3fx)  p99 %7.3f ms (%.3fx)", r[i], m3, m4, m4 / b4, m5, m5 / b5
        if (i == 3) printf "  p99 vs fast %.3fx", m5 / f5
        printf "\n"
      }
    }
    { printf "round %s %-5s %9.0f req/s  p50 %7.3f ms  p99 %7.3f ms  errors %d  steal %s%%\n", $1, $2, $3, $4, $5, $6, $7
      row[NR] = $0; if ($7 + 0 > worst[$1]) worst[$1] = $7 + 0 }
    END {
      split("none fast slow down", r, " ")
      for (n = 1; n <= NR; n++) {
        split(row[n], f, "\t")
        for (c = 3; c <= 5; c++) {
          k = "all" SUBSEP f[2] SUBSEP c; v[k, ++cnt[k]] = f[c]
          if (worst[f[1]] < quiet) { k = "quiet" SUBSEP f[2] SUBSEP c; v[k, ++cnt[k]] = f[c]; nq[f[1]] = 1 }
        }
      }
      summary("median of all rounds (each column separately):", "all")
      q = length(nq)
      if (q > 0) summary(sprintf("median of the %d round(s) whose runs all had under %s%% steal:", q, quiet), "quiet")
      else printf "\nno round had under %s%% steal in all four runs: the numbers above measure the neighbours too\n", quiet
    }' "$TMP/results.tsv"

  echo
  bin/gateway report shadow -admin "http://127.0.0.1:$admin"

  if [[ -n $SOAK ]]; then
    soak "$gw" "$pid"
  fi
}

# soak loads the slow route for $SOAK and prints the gateway's resident
# memory every tenth of it.
soak() {
  local gw=$1 pid=$2 secs i
  secs=${SOAK%s}
  log "soak: $SOAK on the slow route"
  wrk -t2 -c"$CONNS" -d"$SOAK" -s "$TMP/post.lua" "http://127.0.0.1:$gw/slow/predict" >"$TMP/soak.txt" 2>&1 &
  WRK_PID=$!
  echo
  echo "gateway resident memory during the soak:"
  for ((i = 0; i <= 10; i++)); do
    printf '  t=%4ds  %s\n' $((i * secs / 10)) "$(awk '/^VmRSS/ { print $2, $3 }' "/proc/$pid/status")"
    (( i < 10 )) && sleep $((secs / 10))
  done
  wait "$WRK_PID" || true
  WRK_PID=""
  parse_wrk "$TMP/soak.txt" | awk '$1 == "reqs" || $1 == "rps" || $1 == "non2xx" { printf "  %s %s\n", $1, $2 }'
}

main "$@"
