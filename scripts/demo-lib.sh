# shellcheck shell=bash
# scripts/demo-lib.sh: what the canary demos share (scripts/demo-canary.sh,
# scripts/demo-rollback.sh): building, two model workers and a gateway with
# a canary route on free loopback ports, steady traffic from a cycle of
# users, and reading the rollout from GET /admin/rollouts. Every process it
# starts is stopped on exit, on failure and on Ctrl-C. Source it from the
# repository root:
#
#   source scripts/demo-lib.sh
#   CANDIDATE_FLAGS=(-fail-rate 0.2)   # the candidate worker's, if any
#   demo_start
#   load_start
#
# It creates $TMP (removed on exit) and sets the traps.
#
# Knobs (environment):
#   DEMO_RATE       requests a second the traffic aims at     (default 250)
#   DEMO_USERS      distinct X-User-Id values, cycled         (default 1000)
#   DEMO_DEADLINE   seconds the rollout may take, from the
#                   gateway's start                           (default 110)
#   DEMO_PORT_BASE  first port tried when picking ports       (default 18580)

RATE=${DEMO_RATE:-250}
USERS=${DEMO_USERS:-1000}
# shellcheck disable=SC2034  # read by the demos
DEADLINE=${DEMO_DEADLINE:-110}
PORT_BASE=${DEMO_PORT_BASE:-18580}

ROUTE=iris
BODY='{"input":[5.1,3.5,1.4,0.2]}'
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-demo.XXXXXX")
PIDS=()         # every long-running process started, stopped on exit
GATEWAY_PID=""
LOAD_PID=""
NEXT_PORT=$PORT_BASE
URL="" ADMIN=""  # set by demo_start
CANDIDATE_FLAGS=()  # the candidate worker's fault flags, set by a demo

log() { printf '==> %s\n' "$*" >&2; }

die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

# Stops one process and its children: TERM, up to ~5 s, then KILL.
stop_pid() {
  local pid=$1 kids i
  kill -0 "$pid" 2>/dev/null || return 0
  kids=$(children_of "$pid")
  # shellcheck disable=SC2086  # one pid a word
  kill -TERM "$pid" $kids 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  # shellcheck disable=SC2086
  kill -KILL "$pid" $kids 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$? pid i
  trap - EXIT INT TERM
  set +e   # best effort: one failing step must not skip the rest
  ((rc > 128)) && log "interrupted, stopping everything"
  # The traffic first, the gateway last but one, the workers last.
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
  if ((rc != 0)) && [[ -s $TMP/gateway.log ]]; then
    echo "--- the gateway's log, last lines" >&2
    tail -n 15 "$TMP/gateway.log" >&2
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
# Background jobs of a non-interactive shell ignore SIGINT, so cleanup must
# run on INT/TERM too; exiting triggers the EXIT trap.
trap 'exit 130' INT
trap 'exit 143' TERM

# port_free, pick_port and wait_http, shared with the benchmarks.
# shellcheck source=scripts/net.sh
source scripts/net.sh

# start_worker NAME MODEL [FLAGS...] runs a model worker on a fresh port,
# left in PICKED.
start_worker() {
  local name=$1 model=$2 pid
  shift 2
  pick_port
  bin/modelworker -model "models/$model.json" -listen "127.0.0.1:$PICKED" "$@" >"$TMP/$name.log" 2>&1 &
  pid=$!; PIDS+=("$pid")
  wait_http "$name" "$pid" "http://127.0.0.1:$PICKED/health" "$TMP/$name.log"
}

# demo_start builds, starts iris-v1 (stable) and iris-v2 (candidate, with
# CANDIDATE_FLAGS), writes the gateway config with the canary route
# and starts the gateway. Sets URL and ADMIN, and restarts SECONDS: the
# rollout's clock.
demo_start() {
  local stable candidate gw admin
  scripts/deps.sh curl=curl jq=jq >&2
  log "building bin/gateway and bin/modelworker"
  make -s build >&2
  # Both workers take 2 to 4 ms a prediction, as a small model behind a
  # network would: loopback alone answers in microseconds, where the
  # scheduling noise of a busy machine would be most of the latency gate.
  start_worker stable iris-v1 -latency 3ms -jitter 1ms; stable=$PICKED
  start_worker candidate iris-v2 -latency 3ms -jitter 1ms "${CANDIDATE_FLAGS[@]}"; candidate=$PICKED
  pick_port; gw=$PICKED
  pick_port; admin=$PICKED
  log "workers: iris-v1 (stable) on :$stable, iris-v2 (candidate${CANDIDATE_FLAGS[*]:+, ${CANDIDATE_FLAGS[*]}}) on :$candidate"
  cat >"$TMP/gateway.yaml" <<EOF
server: {listen: "127.0.0.1:$gw"}
admin: {listen: "127.0.0.1:$admin"}
state_dir: $TMP/state          # the rollout's progress outlives a restart
pools:
  iris-v1: {backends: ["127.0.0.1:$stable"]}
  iris-v2: {backends: ["127.0.0.1:$candidate"]}
routes:
  - name: $ROUTE
    match: {path_prefix: /v1/models/iris}
    strip_prefix: /v1/models/iris
    canary:
      stable: iris-v1
      candidate: iris-v2
      sticky: header:X-User-Id   # a user who got the candidate keeps it
      steps: [5, 25, 50, 100]
      interval: 5s
      min_requests: 50
      # success_ratio and latency_ratio keep their defaults (0.95, 1.1);
      # the slack absorbs the scheduling noise of a loaded laptop or CI
      # machine, where the p99 of 50 requests is their slowest one
      gates: {latency_slack: 5ms}
EOF
  log "gateway config ($TMP/gateway.yaml):"
  sed 's/^/    /' "$TMP/gateway.yaml" >&2
  bin/gateway run -config "$TMP/gateway.yaml" >"$TMP/gateway.log" 2>&1 &
  GATEWAY_PID=$!; PIDS+=("$GATEWAY_PID")
  wait_http gateway "$GATEWAY_PID" "http://127.0.0.1:$admin/readyz" "$TMP/gateway.log"
  URL="http://127.0.0.1:$gw/v1/models/iris/predict"
  ADMIN="http://127.0.0.1:$admin"
  SECONDS=0
  log "gateway on :$gw (admin :$admin); the rollout has started"
}

# load_start sends steady traffic in the background until stopped: batches
# of requests, a few at a time over kept-alive connections, user-0 to
# user-(USERS-1) in turn in X-User-Id, about RATE a second. Answers are not
# read: the gateway counts them.
load_start() {
  (
    local i=0 k args batch=$((RATE / 10 > 0 ? RATE / 10 : 1))
    while :; do
      args=()
      for ((k = 0; k < batch; k++, i++)); do
        ((k > 0)) && args+=(--next)
        args+=(-s -o /dev/null --max-time 5 -H "X-User-Id: user-$((i % USERS))"
          -H 'Content-Type: application/json' -d "$BODY" "$URL")
      done
      # A tenth of the rate, then a tenth of a second's rest: under RATE
      # by the time the batch takes (reported by the progress lines).
      curl --parallel --parallel-max 8 "${args[@]}" >/dev/null 2>&1 || true
      sleep 0.1
    done
  ) &
  LOAD_PID=$!; PIDS+=("$LOAD_PID")
  log "traffic: up to $RATE requests a second, X-User-Id user-0 to user-$((USERS - 1)) in turn"
}

load_stop() {
  [[ -n $LOAD_PID ]] && stop_pid "$LOAD_PID"
  LOAD_PID=""
}

# rollout prints the route's rollout from GET /admin/rollouts as JSON.
rollout() {
  curl -fsS --max-time 2 "$ADMIN/admin/rollouts" | jq -c --arg r "$ROUTE" '.rollouts[] | select(.route == $r)'
}

# gate_text JSON NAME: the gate NAME of a rollout or an event, as
# "0.987 >= 0.95" (the success ratio) or "1.032, p99 bound 11.87ms" (the
# latency ratio: the candidate's p99 may be latency_ratio times the
# stable's plus latency_slack), with " FAIL" when it does not hold (" fails,
# too few" while a pool has under min_requests: nothing is decided yet);
# "n/a" until both pools have answered.
gate_text() {
  local value threshold pass bound
  IFS=$'\t' read -r value threshold pass bound < <(jq -r --arg n "$2" '(.gates // [])[] | select(.name == $n) |
    [.value // "n/a", .threshold, .pass, ((.detail // "") | capture("bound (?<b>[0-9.]+ms)").b // "?")] | @tsv' <<<"$1") || true
  if [[ -z ${value:-} || $value == n/a ]]; then echo "n/a"; return; fi
  if [[ $2 == latency_ratio ]]; then
    printf '%.3f, p99 bound %s' "$value" "$bound"
  else
    printf '%.3f >= %g' "$value" "$threshold"
  fi
  if [[ $pass != true ]]; then
    if jq -e '(.state == "progressing" or .state == "waiting") and
        ([.window.stable.requests, .window.candidate.requests] | min) < .min_requests' <<<"$1" >/dev/null; then
      printf ' fails, too few'
    else
      printf ' FAIL'
    fi
  fi
  echo
}

# progress_header and progress_line print the rollout as a table row: the
# state, the step of the steps, the candidate's share, each pool's requests,
# failures and p99 at this step, and the two gates.
progress_header() {
  printf '%5s  %-12s %5s %5s  %7s %5s %7s  %7s %5s %7s  %-28s %s\n' \
    t state step cand% stable fail p99 cand fail p99 success_ratio latency_ratio
}

progress_line() {
  local j=$1 row
  row=$(jq -r '[.state, .step, "\(.percent)%",
      .window.stable.requests, .window.stable.errors, "\((.window.stable.p99_ns / 1e4 | round) / 100)ms",
      .window.candidate.requests, .window.candidate.errors, "\((.window.candidate.p99_ns / 1e4 | round) / 100)ms"] | @tsv' <<<"$j")
  local state step pct sr se sp cr ce cp
  IFS=$'\t' read -r state step pct sr se sp cr ce cp <<<"$row"
  printf '%4ss  %-12s %5s %5s  %7s %5s %7s  %7s %5s %7s  %-28s %s\n' \
    "$SECONDS" "$state" "$step" "$pct" "$sr" "$se" "$sp" "$cr" "$ce" "$cp" \
    "$(gate_text "$j" success_ratio)" "$(gate_text "$j" latency_ratio)"
}

# print_history prints a rollout's events, oldest first.
print_history() {
  echo "history (GET /admin/rollouts, .history):"
  jq -r '.history[] |
    "  \(.at | capture("T(?<t>[0-9:]{8})(?<f>[.][0-9]{1,3})?") | .t + (.f // ""))  \(.event | . + " " * (11 - length))  \(.from // "-" | if . == "" then "-" else . end) -> \(.to)  step \(.step) (\(.percent)%)  by \(.by): \(.reason)" +
    (if .window then "  [stable \(.window.stable.requests) req, \(.window.stable.errors) failed; candidate \(.window.candidate.requests) req, \(.window.candidate.errors) failed]" else "" end)' <<<"$1"
}

# probe FIRST N asks once for each of user-FIRST .. user-(FIRST+N-1), in
# order, and prints each one's X-Sluice-Variant ("-" when none came back),
# one a line. One curl, one connection.
probe() {
  local first=$1 n=$2 i args=()
  for ((i = first; i < first + n; i++)); do
    ((i > first)) && args+=(--next)
    args+=(-s -o /dev/null -D - -w 'probe-end %{http_code}\n' --max-time 5 -H "X-User-Id: user-$i"
      -H 'Content-Type: application/json' -d "$BODY" "$URL")
  done
  curl "${args[@]}" | tr -d '\r' | awk '
    tolower($1) == "x-sluice-variant:" { v = $2 }
    $1 == "probe-end"                  { print (v == "" ? "-" : v); v = "" }'
}

# metric_sum NAME LABELS...: the sum of the samples of NAME whose labels
# include every LABEL (`route="iris"`) on GET /metrics.
metric_sum() {
  local name=$1
  shift
  curl -fsS --max-time 2 "$ADMIN/metrics" | awk -v name="$name" -v want="$*" '
    index($0, name "{") == 1 {
      n = split(want, w, " "); ok = 1
      for (i = 1; i <= n; i++) if (index($0, w[i]) == 0) ok = 0
      if (ok) sum += $NF
    }
    END { printf "%d\n", sum }'
}

# rollout_metrics prints the rollout's lines of GET /metrics.
rollout_metrics() {
  echo "metrics (GET /metrics):"
  curl -fsS --max-time 2 "$ADMIN/metrics" | grep -E '^sluice_rollout_' | grep -E 'state="[a-z_]+"} 1|^sluice_rollout_(step|candidate_percent|transitions_total)' | sed 's/^/  /'
}

# gateway_alive fails the demo when the gateway has exited.
gateway_alive() {
  kill -0 "$GATEWAY_PID" 2>/dev/null || die "the gateway exited (its log below)"
}

# poll reads the rollout into the caller's j, state and step, and prints
# its progress line.
poll() {
  gateway_alive
  j=$(rollout) || die "GET $ADMIN/admin/rollouts failed"
  [[ -n $j ]] || die "GET /admin/rollouts has no rollout for route $ROUTE"
  state=$(jq -r .state <<<"$j") step=$(jq -r .step <<<"$j")
  progress_line "$j"
}
