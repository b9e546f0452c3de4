#!/usr/bin/env bash
# deploy/nginx-compat/run-local.sh: the docker-compose stack of this
# directory as local processes, for machines without Docker. The same
# gateway.yaml and certificate, with the addresses moved to loopback through
# the environment variables gateway.yaml reads:
#
#   redis-server        127.0.0.1:6390   (installed from Debian if missing)
#   modelworker iris-v1 127.0.0.1:9101   (worker-v1)
#   modelworker iris-v1 127.0.0.1:9102   (worker-v1b)
#   modelworker iris-v2 127.0.0.1:9103   (worker-v2)
#   gateway             https 127.0.0.1:8443, http 127.0.0.1:8080 (redirect),
#                       admin 127.0.0.1:9901
#
# Usage: deploy/nginx-compat/run-local.sh [--check]
#
#   (no option)  build bin/, start everything, wait until the gateway is
#                ready, print the URLs; Ctrl-C stops everything.
#   --check      the same, then a smoke check (an https prediction answers
#                200, plain http answers 301 to https, ...) and exit: 0 when
#                every check passed. Everything started is stopped either way.
#
# Ports (environment): RUN_LOCAL_PORT_BASE=N picks free ports from N up
# instead of the fixed ones above (for tests: two runs never collide);
# RUN_LOCAL_HTTPS_PORT, RUN_LOCAL_HTTP_PORT, RUN_LOCAL_ADMIN_PORT,
# RUN_LOCAL_REDIS_PORT, RUN_LOCAL_WORKER_V1_PORT, RUN_LOCAL_WORKER_V1B_PORT and
# RUN_LOCAL_WORKER_V2_PORT set one port each.
#
# RUN_LOCAL_BIN=DIR runs DIR/gateway and DIR/modelworker instead of building
# bin/ with `make build` (the test builds its own).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
DIR=deploy/nginx-compat
CONFIG=$DIR/gateway.yaml
CERT=$DIR/ssl/server.crt

CHECK=0
for arg in "$@"; do
  case $arg in
    --check) CHECK=1 ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) printf 'run-local: unknown option %s (try --help)\n' "$arg" >&2; exit 2 ;;
  esac
done

log() { printf 'run-local: %s\n' "$*" >&2; }
die() { printf 'run-local: error: %s\n' "$*" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-run-local.XXXXXX")
PIDS=()   # every process started, stopped in reverse order on exit

# Stop one process: TERM (the gateway drains), wait up to ~10s, then KILL.
stop_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

force_stop() {
  kill -KILL "${PIDS[@]}" 2>/dev/null
  wait
  rm -rf "$TMP"
  exit "$1"
}

cleanup() {
  local rc=$? i
  trap - EXIT
  # A second Ctrl-C (or SIGTERM) while stopping: kill what is left at once.
  trap 'force_stop 130' INT
  trap 'force_stop 143' TERM
  set +e   # best effort: one failing step must not skip the rest
  ((rc > 128)) && log "interrupted"
  if ((${#PIDS[@]} > 0)); then
    log "stopping everything"
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
# Background jobs of a non-interactive shell ignore SIGINT, so Ctrl-C reaches
# this script alone; exiting runs the EXIT trap, which stops them.
trap 'exit 130' INT
trap 'exit 143' TERM

port_free() {
  local p=$1
  if command -v ss >/dev/null; then
    [[ -z $(ss -Hltn "sport = :$p" 2>/dev/null) ]]
  else
    # Without iproute2: a successful connect means someone listens there.
    if timeout 1 bash -c ": >/dev/tcp/127.0.0.1/$p" 2>/dev/null; then return 1; fi
  fi
}

# choose_port VAR DEFAULT: $VAR if set, else a free port from
# RUN_LOCAL_PORT_BASE up when that is set, else DEFAULT.
NEXT_PORT=${RUN_LOCAL_PORT_BASE:-}
TAKEN=" "
choose_port() {
  local var=$1 default=$2 p
  if [[ -n ${!var:-} ]]; then
    p=${!var}
  elif [[ -n ${RUN_LOCAL_PORT_BASE:-} ]]; then
    [[ $RUN_LOCAL_PORT_BASE =~ ^[0-9]+$ ]] || die "RUN_LOCAL_PORT_BASE: $RUN_LOCAL_PORT_BASE is not a port"
    p=""
    while [[ -z $p ]]; do
      ((NEXT_PORT < RUN_LOCAL_PORT_BASE + 1000 && NEXT_PORT < 65536)) ||
        die "no free port in $RUN_LOCAL_PORT_BASE..$((RUN_LOCAL_PORT_BASE + 999))"
      if [[ $TAKEN != *" $NEXT_PORT "* ]] && port_free "$NEXT_PORT"; then p=$NEXT_PORT; fi
      NEXT_PORT=$((NEXT_PORT + 1))
    done
  else
    p=$default
  fi
  if ! [[ $p =~ ^[0-9]+$ ]] || ((p < 1 || p > 65535)); then die "$var: $p is not a port"; fi
  [[ $TAKEN == *" $p "* ]] && die "port $p is chosen twice (check the RUN_LOCAL_*_PORT variables)"
  port_free "$p" || die "port $p is in use; set $var or RUN_LOCAL_PORT_BASE"
  TAKEN+="$p "
  printf -v "$var" '%s' "$p"
}

choose_port RUN_LOCAL_HTTPS_PORT 8443
choose_port RUN_LOCAL_HTTP_PORT 8080
choose_port RUN_LOCAL_ADMIN_PORT 9901
choose_port RUN_LOCAL_REDIS_PORT 6390
choose_port RUN_LOCAL_WORKER_V1_PORT 9101
choose_port RUN_LOCAL_WORKER_V1B_PORT 9102
choose_port RUN_LOCAL_WORKER_V2_PORT 9103

# What gateway.yaml reads instead of its docker-compose defaults. Exported,
# so that `bin/gateway healthcheck -config` finds the same admin address.
export SLUICE_HTTPS_LISTEN=127.0.0.1:$RUN_LOCAL_HTTPS_PORT
export SLUICE_HTTP_LISTEN=127.0.0.1:$RUN_LOCAL_HTTP_PORT
export SLUICE_ADMIN_LISTEN=127.0.0.1:$RUN_LOCAL_ADMIN_PORT
export SLUICE_TLS_DIR=$PWD/$DIR/ssl
export SLUICE_REDIS=127.0.0.1:$RUN_LOCAL_REDIS_PORT
export WORKER_V1=127.0.0.1:$RUN_LOCAL_WORKER_V1_PORT
export WORKER_V1B=127.0.0.1:$RUN_LOCAL_WORKER_V1B_PORT
export WORKER_V2=127.0.0.1:$RUN_LOCAL_WORKER_V2_PORT

scripts/deps.sh redis-server=redis-server curl=curl >&2
if [[ -n ${RUN_LOCAL_BIN:-} ]]; then
  BIN=${RUN_LOCAL_BIN%/}
  [[ -x $BIN/gateway && -x $BIN/modelworker ]] || die "RUN_LOCAL_BIN: no gateway and modelworker in $BIN"
else
  BIN=bin
  log "building bin/gateway and bin/modelworker"
  make -s build >&2
fi
"$BIN/gateway" check -config "$CONFIG" >&2 || die "$CONFIG does not pass gateway check"

# start NAME CMD...: runs CMD in the background, output to $TMP/NAME.log.
start() {
  local name=$1
  shift
  "$@" >"$TMP/$name.log" 2>&1 &
  PIDS+=("$!")
}

# running NAME PID: fail with the end of NAME's log when PID has exited.
running() {
  kill -0 "$2" 2>/dev/null && return 0
  tail -n 20 "$TMP/$1.log" >&2 || true
  die "$1 exited during startup (log above)"
}

# redis_command PORT COMMAND: the first line of Redis's answer to an inline
# command, without redis-cli.
redis_command() {
  local reply=""
  { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  printf '%s\r\n' "$2" >&3
  read -r -t 1 reply <&3 || true
  exec 3<&-
  printf '%s\n' "${reply%$'\r'}"
}

log "starting redis-server on 127.0.0.1:$RUN_LOCAL_REDIS_PORT"
start redis redis-server --port "$RUN_LOCAL_REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP"
for ((i = 0; ; i++)); do
  running redis "${PIDS[-1]}"
  [[ $(redis_command "$RUN_LOCAL_REDIS_PORT" PING) == +PONG ]] && break
  ((i < 100)) || die "redis-server did not answer PING within ~10s"
  sleep 0.1
done

WORKER_PIDS=()
for w in "worker-v1 iris-v1 $WORKER_V1" "worker-v1b iris-v1 $WORKER_V1B" "worker-v2 iris-v2 $WORKER_V2"; do
  read -r name model addr <<<"$w"
  log "starting $name ($model) on $addr"
  start "$name" "$BIN/modelworker" -model "models/$model.json" -listen "$addr"
  WORKER_PIDS+=("$name:${PIDS[-1]}:$addr")
done
for w in "${WORKER_PIDS[@]}"; do
  IFS=: read -r name pid host port <<<"$w"
  for ((i = 0; ; i++)); do
    running "$name" "$pid"
    curl -fsS -o /dev/null --max-time 1 "http://$host:$port/health" 2>/dev/null && break
    ((i < 100)) || die "$name did not answer /health within ~10s"
    sleep 0.1
  done
done

log "starting the gateway"
if ((CHECK)); then
  start gateway "$BIN/gateway" run -config "$CONFIG"
else
  # Interactive: the gateway's log goes to the terminal.
  "$BIN/gateway" run -config "$CONFIG" &
  PIDS+=("$!")
  : >"$TMP/gateway.log"
fi
GATEWAY_PID=${PIDS[-1]}
for ((i = 0; ; i++)); do
  running gateway "$GATEWAY_PID"
  "$BIN/gateway" healthcheck -config "$CONFIG" -timeout 1s >/dev/null 2>"$TMP/healthcheck.err" && break
  if ((i >= 150)); then
    cat "$TMP/healthcheck.err" >&2
    tail -n 20 "$TMP/gateway.log" >&2 || true
    die "the gateway was not ready within ~30s"
  fi
  sleep 0.2
done
log "the gateway is ready"

HTTPS=https://localhost:$RUN_LOCAL_HTTPS_PORT
HTTP=http://localhost:$RUN_LOCAL_HTTP_PORT
ADMIN=http://$SLUICE_ADMIN_LISTEN
BODY='{"input":[5.1,3.5,1.4,0.2]}'

if ((!CHECK)); then
  cat <<EOF

Sluice serves the nginx-compat stack ($CONFIG) on loopback:
  $HTTPS/v1/models/iris/      A/B test, 90/10 by X-User-Id
  $HTTPS/v1/models/iris-v1/   pinned to iris-v1 (iris-v2/ likewise)
  $HTTP/                      redirects to https
  $ADMIN/metrics   /readyz   /admin/experiments   /admin/limits   /admin/cache
  redis 127.0.0.1:$RUN_LOCAL_REDIS_PORT, workers $WORKER_V1 $WORKER_V1B (iris-v1), $WORKER_V2 (iris-v2)

From the repository root:
  curl --cacert $CERT $HTTPS/v1/models/iris/predict -H 'X-User-Id: alice' -H 'X-API-Key: demo' -d '$BODY'
  curl -si $HTTP/v1/models/iris/predict
  $BIN/gateway report experiments -admin $ADMIN

Saving $CONFIG reloads the gateway. Ctrl-C stops everything.
EOF
  # wait returns when the gateway exits or a signal arrives (the trap then
  # stops the rest).
  rc=0
  wait "$GATEWAY_PID" || rc=$?
  PIDS=("${PIDS[@]:0:${#PIDS[@]}-1}")   # reaped; nothing to stop
  log "the gateway exited with status $rc"
  exit "$rc"
fi

# The smoke check. Requests go to 127.0.0.1 whatever localhost resolves to;
# the certificate is checked for the name localhost.
FAILED=0
ok() { printf 'ok   %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*"; FAILED=1; }
CURL=(curl -sS --max-time 5 --cacert "$CERT"
  --resolve "localhost:$RUN_LOCAL_HTTPS_PORT:127.0.0.1" --resolve "localhost:$RUN_LOCAL_HTTP_PORT:127.0.0.1")

# 1. An https prediction through the A/B route.
out=$("${CURL[@]}" -D "$TMP/h1" -o "$TMP/b1" -w '%{http_code}' -H 'X-User-Id: alice' -H 'X-API-Key: demo' \
  -H 'Content-Type: application/json' -d "$BODY" "$HTTPS/v1/models/iris/predict" 2>&1) || true
variant=$(awk -F': ' 'tolower($1) == "x-sluice-variant" { sub(/\r$/, "", $2); print $2 }' "$TMP/h1" 2>/dev/null)
if [[ $out == 200 ]] && grep -q '"prediction"' "$TMP/b1"; then
  ok "https prediction: POST $HTTPS/v1/models/iris/predict -> 200 (variant ${variant:-?}): $(head -c 200 "$TMP/b1")"
else
  fail "https prediction: POST $HTTPS/v1/models/iris/predict -> $out: $(head -c 300 "$TMP/b1" 2>/dev/null)"
fi

# 2. The same prediction again comes from the cache.
out=$("${CURL[@]}" -D "$TMP/h2" -o /dev/null -w '%{http_code}' -H 'X-User-Id: alice' -H 'X-API-Key: demo' \
  -H 'Content-Type: application/json' -d "$BODY" "$HTTPS/v1/models/iris/predict" 2>&1) || true
cache=$(awk -F': ' 'tolower($1) == "x-sluice-cache" { sub(/\r$/, "", $2); print $2 }' "$TMP/h2" 2>/dev/null)
if [[ $out == 200 && $cache == hit ]]; then
  ok "cache: the same prediction again -> 200, X-Sluice-Cache: hit"
else
  fail "cache: the same prediction again -> $out, X-Sluice-Cache: ${cache:-none} (want 200, hit)"
fi

# 3. Plain http answers 301 to the same URL over https.
want="$HTTPS/v1/models/iris/predict"
out=$("${CURL[@]}" -o /dev/null -w '%{http_code} %{redirect_url}' "$HTTP/v1/models/iris/predict" 2>&1) || true
if [[ $out == "301 $want" ]]; then
  ok "redirect: GET $HTTP/v1/models/iris/predict -> 301 $want"
else
  fail "redirect: GET $HTTP/v1/models/iris/predict -> $out (want 301 $want)"
fi

# 4. Following it reaches a worker through the pinned route.
out=$("${CURL[@]}" -L -o "$TMP/b4" -w '%{http_code} %{url_effective}' "$HTTP/v1/models/iris-v1/model/info" 2>&1) || true
if [[ $out == "200 $HTTPS/v1/models/iris-v1/model/info" ]] && grep -q '"version":"1"' "$TMP/b4"; then
  ok "redirect followed: GET $HTTP/v1/models/iris-v1/model/info -> 200 from iris-v1 over https"
else
  fail "redirect followed: GET $HTTP/v1/models/iris-v1/model/info -> $out: $(head -c 300 "$TMP/b4" 2>/dev/null)"
fi

# 5. Redis is in use: the gateway reports it up, and the shared cache
# wrote the answer of check 1 there (in the background, so allow a moment).
limits=$(curl -sS --max-time 5 "$ADMIN/admin/limits" 2>&1 | tr -d ' \n') || true
if [[ $limits == *'"redis":{"configured":true,"up":true'* ]]; then
  ok "redis: /admin/limits reports Redis configured and up"
else
  fail "redis: /admin/limits does not report Redis up: $(head -c 300 <<<"$limits")"
fi
for ((i = 0; i < 20; i++)); do
  keys=$(redis_command "$RUN_LOCAL_REDIS_PORT" 'KEYS sluice:cache:*')
  [[ $keys == '*'[1-9]* ]] && break
  sleep 0.1
done
if [[ $keys == '*'[1-9]* ]]; then
  ok "redis: the shared cache holds ${keys#\*} answer(s)"
else
  fail "redis: no sluice:cache:* key in Redis (KEYS answered ${keys:-nothing})"
fi

if ((FAILED)); then
  log "gateway log (last 30 lines):"
  tail -n 30 "$TMP/gateway.log" >&2 || true
  die "smoke check failed"
fi
echo "smoke check passed"
