#!/usr/bin/env bash
# bench/run.sh: side-by-side benchmark of a fixed backend reached
#   1. directly,
#   2. through nginx (upstream keepalive), and
#   3. through the Sluice gateway (bin/gateway), and
#   4. "cached": through the same gateway process on a second route with a
#      response cache (cache: {ttl: 1h}), so every request after the first
#      is answered from memory (X-Sluice-Cache: hit) and never reaches the
#      backend; compared with 3. it shows what a cache hit costs against a
#      proxied request (its CPU per request is the gateway's, as for 3.).
#
# Run from anywhere (it cd's to the repo root); `make bench` calls it.
# It is a benchmark, not a test: it always prints what it measured and
# never fails on slow numbers, but it exits non-zero if something cannot
# be installed, built or started.
#
# Knobs (environment):
#   BENCH_DURATION      wrk duration of the main run           (default 10s)
#   BENCH_CONNS         connections of the main run            (default 64)
#   BENCH_THREADS       wrk threads of the main run            (default 2)
#   BENCH_LAT_DURATION  duration of the 1-connection run       (default 5s)
#   BENCH_WARMUP        warm-up duration before each target    (default 2s)
#   BENCH_RUNS          repeat the whole comparison N times    (default 1)
#   BENCH_TARGETS       subset of "direct nginx gateway cached" (default all)
#   BENCH_GATEWAY_BIN   gateway binary                         (default bin/gateway)
#   BENCH_PORT_BASE     first port tried when picking ports    (default 18080)
#   BENCH_RAW_DIR       if set, raw wrk outputs are copied there
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=${BENCH_DURATION:-10s}
CONNS=${BENCH_CONNS:-64}
THREADS=${BENCH_THREADS:-2}
LAT_DURATION=${BENCH_LAT_DURATION:-5s}
WARMUP=${BENCH_WARMUP:-2s}
RUNS=${BENCH_RUNS:-1}
TARGETS=${BENCH_TARGETS:-direct nginx gateway cached}
GATEWAY_BIN=${BENCH_GATEWAY_BIN:-bin/gateway}
PORT_BASE=${BENCH_PORT_BASE:-18080}

# wrk refuses fewer connections than threads.
if (( CONNS < THREADS )); then THREADS=$CONNS; fi

# shellcheck source=bench/lib.sh
source bench/lib.sh
NGINX=""     # path of the nginx binary (may live in /usr/sbin, off PATH)
NGINX_PID="" GATEWAY_PID="" BACKEND_PID=""

has() { [[ " $TARGETS " == *" $1 "* ]]; }
# The gateway process serves both the "gateway" and the "cached" target.
needs_gateway() { has gateway || has cached; }

# ------------------------------------------------------------ prerequisites

find_nginx() {
  NGINX=$(command -v nginx || true)
  if [[ -z $NGINX && -x /usr/sbin/nginx ]]; then NGINX=/usr/sbin/nginx; fi
  [[ -n $NGINX ]]
}

# Install wrk/nginx (and curl, used for readiness checks) only if missing.
ensure_tools() {
  local missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  if has nginx; then find_nginx || missing+=(nginx); fi
  command -v curl >/dev/null || missing+=(curl)
  command -v go >/dev/null || die "go is not installed"
  (( ${#missing[@]} == 0 )) && return 0

  log "installing ${missing[*]} with apt-get"
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
  local sudo=()
  if (( EUID != 0 )); then
    command -v sudo >/dev/null || die "missing ${missing[*]}: run as root or install sudo"
    sudo=(sudo)
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  command -v wrk >/dev/null || die "wrk still missing after apt-get"
  if has nginx; then find_nginx || die "nginx still missing after apt-get"; fi
}

build_binaries() {
  log "building bench backend"
  go build -o "$TMP/backend" ./bench/backend || die "cannot build bench/backend"
  if needs_gateway && [[ ! -x $GATEWAY_BIN ]]; then
    log "$GATEWAY_BIN missing, building ./cmd/gateway"
    mkdir -p "$(dirname "$GATEWAY_BIN")"
    go build -o "$GATEWAY_BIN" ./cmd/gateway ||
      die "cannot build the gateway (BENCH_TARGETS='direct nginx' skips it)"
  fi
}

# --------------------------------------------------------------- processes

start_backend() {
  pick_port; BACKEND_PORT=$PICKED
  "$TMP/backend" -listen "127.0.0.1:$BACKEND_PORT" >"$TMP/backend.log" 2>&1 &
  BACKEND_PID=$!; PIDS+=("$BACKEND_PID")
  wait_http backend "$BACKEND_PID" "http://127.0.0.1:$BACKEND_PORT/" "$TMP/backend.log"
}

start_nginx() {
  pick_port; NGINX_PORT=$PICKED
  local conf=$TMP/nginx.conf
  mkdir -p "$TMP/nginx"
  # keepalive_requests is raised on both sides because nginx's default (1000)
  # would make it close client and upstream connections every 1000 requests,
  # which the gateway does not do; we compare proxying, not that default.
  cat >"$conf" <<EOF
worker_processes auto;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/client_body;
    proxy_temp_path       $TMP/nginx/proxy;
    fastcgi_temp_path     $TMP/nginx/fastcgi;
    uwsgi_temp_path       $TMP/nginx/uwsgi;
    scgi_temp_path        $TMP/nginx/scgi;
    keepalive_requests 1000000;

    upstream bench_backend {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://bench_backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
  # -e (nginx >= 1.19.5) keeps even the pre-config error log out of /var/log.
  local elog=() help
  help=$("$NGINX" -h 2>&1 || true)
  [[ $help == *"-e filename"* ]] && elog=(-e "$TMP/nginx-error.log")
  "$NGINX" -t -q -c "$conf" -p "$TMP/nginx" "${elog[@]}" >"$TMP/nginx.log" 2>&1 ||
    { cat "$TMP/nginx.log" >&2; die "nginx rejected the generated config"; }
  "$NGINX" -c "$conf" -p "$TMP/nginx" "${elog[@]}" -g 'daemon off;' >>"$TMP/nginx.log" 2>&1 &
  NGINX_PID=$!; PIDS+=("$NGINX_PID")
  wait_http nginx "$NGINX_PID" "http://127.0.0.1:$NGINX_PORT/" "$TMP/nginx-error.log"
}

# The "cached" route comes before the catch-all one (routes match in order)
# and is only configured when that target runs, so that a gateway binary
# without the cache still serves the other targets.
start_gateway() {
  pick_port; GATEWAY_PORT=$PICKED
  pick_port; ADMIN_PORT=$PICKED
  local cached_route=""
  if has cached; then
    cached_route='  - name: cached
    match: {path_prefix: /cached}
    strip_prefix: /cached
    pool: bench
    cache: {ttl: 1h}
'
  fi
  cat >"$TMP/gateway.yaml" <<EOF
server:
  listen: "127.0.0.1:$GATEWAY_PORT"
admin:
  listen: "127.0.0.1:$ADMIN_PORT"
pools:
  bench:
    backends: ["127.0.0.1:$BACKEND_PORT"]
    max_conns: 512
routes:
${cached_route}  - name: bench
    match: {path_prefix: /}
    pool: bench
EOF
  "$GATEWAY_BIN" -config "$TMP/gateway.yaml" >"$TMP/gateway.log" 2>&1 &
  GATEWAY_PID=$!; PIDS+=("$GATEWAY_PID")
  wait_http gateway "$GATEWAY_PID" "http://127.0.0.1:$ADMIN_PORT/healthz" "$TMP/gateway.log"
  wait_http gateway "$GATEWAY_PID" "http://127.0.0.1:$GATEWAY_PORT/" "$TMP/gateway.log"
}

# A proxy that answers 200 with the wrong body would make fast, meaningless
# numbers; compare one proxied body with the backend's.
check_body() {
  local name=$1 url=$2 want got
  want=$(curl -fsS --max-time 2 "http://127.0.0.1:$BACKEND_PORT/")
  got=$(curl -fsS --max-time 2 "$url" || true)
  [[ $got == "$want" ]] || log "WARNING: $name returned a different body: ${got:0:200}"
}

# The cached target: the first request fills the cache and must return the
# backend's body; the second must be a hit (else the target would measure
# plain proxying under another name) with that same body.
check_cache() {
  local url=$1 want got hdrs
  want=$(curl -fsS --max-time 2 "http://127.0.0.1:$BACKEND_PORT/")
  got=$(curl -fsS --max-time 2 "$url" || true)
  [[ $got == "$want" ]] || log "WARNING: cached returned a different body: ${got:0:200}"
  hdrs=$TMP/cached-headers.txt
  got=$(curl -fsS --max-time 2 -D "$hdrs" "$url" || true)
  [[ $got == "$want" ]] || log "WARNING: cached returned a different body on a hit: ${got:0:200}"
  grep -qiE '^x-sluice-cache:[[:space:]]*hit[[:space:]]*$' "$hdrs" 2>/dev/null ||
    log "WARNING: cached: the second request was not a cache hit (no X-Sluice-Cache: hit): its numbers are plain proxying"
}

# ---------------------------------------------------------------- measuring


# utime+stime (fields 14 and 15 of /proc/PID/stat, all threads included),
# summed over the given pids, in clock ticks.
cpu_ticks() {
  local total=0 pid stat rest
  for pid in "$@"; do
    { stat=$(<"/proc/$pid/stat"); } 2>/dev/null || continue
    rest=${stat##*) }
    # shellcheck disable=SC2086
    set -- $rest    # $1 is field 3 (state), so field 14 is $12 and 15 is $13
    total=$((total + ${12} + ${13}))
  done
  echo "$total"
}

# CPU of this shell's reaped children (cutime+cstime, fields 16 and 17 of
# /proc/$$/stat): once waited for, wrk's CPU lands there.
reaped_child_ticks() {
  local stat rest
  stat=$(<"/proc/$$/stat")
  rest=${stat##*) }
  # shellcheck disable=SC2086
  set -- $rest
  echo $((${14} + ${15}))
}

# Busy ticks of the whole machine, all CPUs (first line of /proc/stat:
# user nice system idle iowait irq softirq steal; idle and iowait excluded).
machine_busy_ticks() {
  awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

# One CPU snapshot: "wall_seconds machine proxy backend wrk" (ticks).
# Used around the main run to get the proxy's CPU and, as a sanity check,
# how much CPU something else on the machine took meanwhile.
cpu_snapshot() {
  # shellcheck disable=SC2086
  echo "$(date +%s.%N) $(machine_busy_ticks) $(cpu_ticks $1) $(cpu_ticks "$BACKEND_PID") $(reaped_child_ticks)"
}

# Processes whose CPU is charged to a target: every nginx process (master
# and workers), the gateway's single process, nothing for "direct".
proxy_pids() {
  # shellcheck disable=SC2046  # one pid per word
  case $1 in
    nginx)   echo "$NGINX_PID" $(children_of "$NGINX_PID") ;;
    gateway | cached) echo "$GATEWAY_PID" ;;
    *)       ;;
  esac
}

target_url() {
  case $1 in
    direct)  echo "http://127.0.0.1:$BACKEND_PORT/predict" ;;
    nginx)   echo "http://127.0.0.1:$NGINX_PORT/predict" ;;
    gateway) echo "http://127.0.0.1:$GATEWAY_PORT/predict" ;;
    cached)  echo "http://127.0.0.1:$GATEWAY_PORT/cached/" ;;
  esac
}



# Runs one target: warm-up, main run with CPU accounting, 1-connection run.
# Appends one line to $TMP/results.tsv.
bench_target() {
  local run=$1 name=$2 url pids before after out lat
  url=$(target_url "$name")
  pids=$(proxy_pids "$name")
  out=$TMP/wrk-$run-$name-c$CONNS.txt
  lat=$TMP/wrk-$run-$name-c1.txt

  log "run $run/$RUNS: $name ($url)"
  run_wrk /dev/null -t"$THREADS" -c"$CONNS" -d"$WARMUP" "$url" || true

  before=$(cpu_snapshot "$pids")
  run_wrk "$out" -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$url" ||
    log "WARNING: wrk exited non-zero for $name (the table shows what could be parsed)"
  after=$(cpu_snapshot "$pids")

  run_wrk "$lat" -t1 -c1 -d"$LAT_DURATION" --latency "$url" ||
    log "WARNING: 1-connection wrk exited non-zero for $name"

  parse_wrk "$out" >"$out.kv"
  parse_wrk "$lat" >"$lat.kv"

  # cpu10k: proxy CPU seconds per 10k requests ("nan" for direct: no proxy).
  # other: % of the machine's CPU capacity used by processes that are neither
  # wrk, the backend nor the proxy during the main run.
  local reqs cpu10k other
  reqs=$(field "$out.kv" reqs)
  read -r cpu10k other < <(awk -v b="$before" -v a="$after" -v n="$reqs" \
    -v hz="$CLK_TCK" -v ncpu="$(nproc)" -v has_proxy="${pids:+1}" 'BEGIN {
      split(b, x, " "); split(a, y, " ")
      proxy = y[3] - x[3]
      cpu10k = (has_proxy && n + 0 > 0) ? sprintf("%.4f", proxy / hz / n * 10000) : "nan"
      other = (y[2] - x[2]) - proxy - (y[4] - x[4]) - (y[5] - x[5])
      wall = y[1] - x[1]
      pct = (wall > 0) ? 100 * other / (wall * hz * ncpu) : 0
      printf "%s %.1f\n", cpu10k, (pct < 0 ? 0 : pct)
    }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    "$run" "$name" "$(field "$out.kv" rps)" "$(field "$out.kv" p50)" \
    "$(field "$out.kv" p99)" "$(field "$lat.kv" p50)" "$cpu10k" \
    "$(($(field "$out.kv" non2xx) + $(field "$lat.kv" non2xx)))" \
    "$(($(field "$out.kv" sock) + $(field "$lat.kv" sock)))" \
    "$other" "$reqs" >>"$TMP/results.tsv"
}

# ---------------------------------------------------------------- reporting

# Prints the table for one run (SEL = run number) or the per-column medians
# over all runs (SEL = median). Ratios are gateway/nginx and cached/gateway;
# for CPU, p99 and 1-connection p50 lower is better, so there a ratio > 1
# means the first is worse (for throughput, higher is better).
print_table() {
  local sel=$1 title=$2
  awk -F'\t' -v sel="$sel" -v title="$title" -v order="$TARGETS" '
    function num(v) { return v != "" && v != "nan" && v == v + 0 }
    function fmt(v, f) { return num(v) ? sprintf(f, v) : "-" }
    function median(key,    n, i, j, t, a) {
      n = cnt[key]
      if (n == 0) return "nan"
      for (i = 1; i <= n; i++) a[i] = vals[key, i]
      for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function ratio(a, b) { return (num(a) && num(b) && b + 0 != 0) ? sprintf("%.2fx", a / b) : "-" }
    {
      if (sel != "median" && $1 != sel) next
      for (c = 3; c <= 10; c++) if (num($c)) { k = $2 SUBSEP c; vals[k, ++cnt[k]] = $c + 0 }
      seen[$2] = 1
    }
    END {
      print ""
      print title
      hdr = "%-8s %12s %10s %10s %12s %14s %8s %8s %8s\n"
      printf hdr, "target", "req/s", "p50 ms", "p99 ms", "p50 ms @1c", "CPU s/10k req", "non-2xx", "sock err", "other %"
      printf hdr, "------", "-----", "------", "------", "----------", "-------------", "-------", "--------", "-------"
      nt = split(order, t, " ")
      for (i = 1; i <= nt; i++) {
        name = t[i]
        if (!(name in seen)) continue
        for (c = 3; c <= 10; c++) m[name, c] = median(name SUBSEP c)
        printf hdr, name,
          fmt(m[name, 3], "%.0f"), fmt(m[name, 4], "%.3f"), fmt(m[name, 5], "%.3f"),
          fmt(m[name, 6], "%.3f"), fmt(m[name, 7], "%.4f"),
          fmt(m[name, 8], "%d"), fmt(m[name, 9], "%d"), fmt(m[name, 10], "%.1f")
      }
      if (("gateway" in seen) && ("nginx" in seen)) {
        printf "gateway/nginx: throughput %s, CPU per request %s, p99 %s, p50 @1 conn %s\n",
          ratio(m["gateway", 3], m["nginx", 3]), ratio(m["gateway", 7], m["nginx", 7]),
          ratio(m["gateway", 5], m["nginx", 5]), ratio(m["gateway", 6], m["nginx", 6])
      }
      if (("cached" in seen) && ("gateway" in seen)) {
        printf "cached/gateway: throughput %s, CPU per request %s, p99 %s, p50 @1 conn %s\n",
          ratio(m["cached", 3], m["gateway", 3]), ratio(m["cached", 7], m["gateway", 7]),
          ratio(m["cached", 5], m["gateway", 5]), ratio(m["cached", 6], m["gateway", 6])
      }
      for (i = 1; i <= nt; i++)
        if ((t[i] in seen) && (m[t[i], 8] + m[t[i], 9]) > 0)
          printf "WARNING: %s had errors (non-2xx %d, socket %d): its req/s is not comparable\n", t[i], m[t[i], 8], m[t[i], 9]
      for (i = 1; i <= nt; i++)
        if ((t[i] in seen) && m[t[i], 10] > 5)
          printf "WARNING: other processes used %.0f%% of the CPUs during %s: its req/s and latency are skewed\n", m[t[i], 10], t[i]
    }' "$TMP/results.tsv"
}

print_machine() {
  local cpu
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  [[ -n $cpu ]] || cpu=$(awk -F': ' '/^(Hardware|Model|cpu model)/ { print $2; exit }' /proc/cpuinfo)
  echo "machine: $(nproc) CPUs, ${cpu:-unknown CPU}, kernel $(uname -r)"
  if has nginx; then echo "nginx:   $("$NGINX" -v 2>&1 | sed 's/^nginx version: //')"; fi
  echo "wrk:     $( (wrk -v 2>&1 || true) | head -n 1)"
  echo "go:      $(go version | awk '{ print $3 }')"
  echo "runs:    wrk -t$THREADS -c$CONNS -d$DURATION --latency, then wrk -t1 -c1 -d$LAT_DURATION --latency (warm-up $WARMUP)"
  echo "load:    1/5/15-min load average $LOAD_BEFORE before, $(cut -d' ' -f1-3 /proc/loadavg) after"
  echo "note:    wrk, backend and proxy share these CPUs: compare ratios, not absolute numbers"
}

# ---------------------------------------------------------------------- main

main() {
  [[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"
  local t
  for t in $TARGETS; do
    case $t in direct | nginx | gateway | cached) ;; *) die "unknown target '$t' in BENCH_TARGETS" ;; esac
  done

  LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
  ensure_tools
  CLK_TCK=$(getconf CLK_TCK)
  build_binaries

  start_backend
  if has nginx; then start_nginx; check_body nginx "http://127.0.0.1:$NGINX_PORT/predict"; fi
  if needs_gateway; then start_gateway; fi
  if has gateway; then check_body gateway "http://127.0.0.1:$GATEWAY_PORT/predict"; fi
  if has cached; then check_cache "http://127.0.0.1:$GATEWAY_PORT/cached/"; fi
  log "ports: backend $BACKEND_PORT${NGINX_PORT:+, nginx $NGINX_PORT}${GATEWAY_PORT:+, gateway $GATEWAY_PORT (admin $ADMIN_PORT)}"

  : >"$TMP/results.tsv"
  local run
  for ((run = 1; run <= RUNS; run++)); do
    for t in $TARGETS; do bench_target "$run" "$t"; done
  done

  echo
  print_machine
  for ((run = 1; run <= RUNS; run++)); do print_table "$run" "run $run of $RUNS"; done
  if (( RUNS > 1 )); then print_table median "median of $RUNS runs (each column separately)"; fi
}

main "$@"
