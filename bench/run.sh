#!/usr/bin/env bash
# bench/run.sh: the reference comparison behind `make bench`. The same
# backend (the trivial bench/backend, and a model worker serving iris) is
# loaded with wrk directly and through nginx, HAProxy, Caddy and the Sluice
# gateway (plain, full-feature, cached, and with a slow shadow), at 1, 64
# and 256 connections, in interleaved rounds; BENCHMARKS.md has the method.
#
# This script installs what is missing (wrk, and the proxies the chosen
# targets need, from Debian packages), builds the binaries, and hands over
# to bench/compare, which runs everything, prints the tables and writes the
# JSON. Run from anywhere (it cd's to the repository root).
#
# It is a benchmark, not a test: it never fails on slow numbers, but it
# exits non-zero if something cannot be installed, built or started.
#
# Knobs (environment; see BENCHMARKS.md):
#   BENCH_BACKENDS    "trivial model" (default both)
#   BENCH_TARGETS     subset of "direct nginx haproxy caddy sluice sluice-full
#                     sluice-cached sluice-shadow-slow" (default all)
#   BENCH_CONNS       "1 64 256"       BENCH_ROUNDS      3
#   BENCH_DURATION    10s              BENCH_WARMUP      2s
#   BENCH_SLOW_DELAY  8ms              BENCH_OUT         bench/out/latest.json
#   BENCH_USERS       1000             BENCH_PORT_BASE   18080
#   BENCH_RAW_DIR     keep configs, logs and wrk outputs there
#   BENCH_GATEWAY_BIN bin/gateway      BENCH_MODELWORKER_BIN bin/modelworker
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

ALL_TARGETS="direct nginx haproxy caddy sluice sluice-full sluice-cached sluice-shadow-slow"
TARGETS=${BENCH_TARGETS:-$ALL_TARGETS}
BACKENDS=${BENCH_BACKENDS:-trivial model}
GATEWAY_BIN=${BENCH_GATEWAY_BIN:-bin/gateway}
WORKER_BIN=${BENCH_MODELWORKER_BIN:-bin/modelworker}
TOOLS=bench/out/bin   # the bench's own binaries (bench/out/ is not tracked)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

has_target() { [[ " $TARGETS " == *" $1 "* ]]; }
has_backend() { [[ " $BACKENDS " == *" $1 "* ]]; }

# nginx and haproxy install to /usr/sbin, which is not on every PATH.
found() { command -v "$1" >/dev/null || [[ -x /usr/sbin/$1 ]]; }

# Installs wrk and the proxies the chosen targets need, each only if
# missing, with apt-get (as root, or through sudo).
ensure_tools() {
  local missing=() name
  command -v go >/dev/null || die "go is not installed"
  found wrk || missing+=(wrk)
  for name in nginx haproxy caddy; do
    if has_target "$name" && ! found "$name"; then missing+=("$name"); fi
  done
  (( ${#missing[@]} == 0 )) && return 0

  log "installing ${missing[*]} with apt-get"
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
  local sudo=()
  if (( EUID != 0 )); then
    command -v sudo >/dev/null || die "missing ${missing[*]}: run as root or install sudo"
    sudo=(sudo)
  fi
  # apt's output goes to stderr: stdout carries the results only.
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 ||
    die "apt-get update failed"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2 ||
    die "apt-get install ${missing[*]} failed"
  for name in "${missing[@]}"; do
    found "$name" || die "$name still missing after apt-get"
  done
}

# The bench's own programs are always rebuilt (quick, and never stale);
# the gateway and the model worker only when missing (`make bench` has just
# built them).
build_binaries() {
  mkdir -p "$TOOLS"
  log "building bench/backend and bench/compare"
  go build -o "$TOOLS/backend" ./bench/backend || die "cannot build bench/backend"
  go build -o "$TOOLS/compare" ./bench/compare || die "cannot build bench/compare"
  local t
  for t in $TARGETS; do
    if [[ $t == sluice* && ! -x $GATEWAY_BIN ]]; then
      log "$GATEWAY_BIN missing, building ./cmd/gateway"
      mkdir -p "$(dirname "$GATEWAY_BIN")"
      go build -trimpath -o "$GATEWAY_BIN" ./cmd/gateway || die "cannot build the gateway"
      break
    fi
  done
  if has_backend model && [[ ! -x $WORKER_BIN ]]; then
    log "$WORKER_BIN missing, building ./cmd/modelworker"
    mkdir -p "$(dirname "$WORKER_BIN")"
    go build -trimpath -o "$WORKER_BIN" ./cmd/modelworker || die "cannot build the model worker"
  fi
}

ensure_tools
build_binaries
# compare stops every process it starts, on exit and on Ctrl-C.
exec "$TOOLS/compare" -backend-bin "$TOOLS/backend" -gateway-bin "$GATEWAY_BIN" -modelworker-bin "$WORKER_BIN"
