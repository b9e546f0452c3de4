# shellcheck shell=bash
# scripts/net.sh: loopback port picking, startup waits and child
# processes, sourced by bench/lib.sh and scripts/demo-lib.sh. The sourcing
# script defines die and sets PORT_BASE and NEXT_PORT.

port_free() {
  local p=$1
  if command -v ss >/dev/null; then
    [[ -z $(ss -Hltn "sport = :$p" 2>/dev/null) ]]
  else
    # Without iproute2: a successful connect means someone listens there.
    if timeout 1 bash -c ": >/dev/tcp/127.0.0.1/$p" 2>/dev/null; then return 1; fi
  fi
}

# Leaves a free port in PICKED (a global, so no subshell is needed and two
# picks never return the same port).
# shellcheck disable=SC2034  # PICKED is read by the sourcing script
pick_port() {
  local limit=$((PORT_BASE + 500))
  while (( NEXT_PORT < limit )); do
    if port_free "$NEXT_PORT"; then PICKED=$NEXT_PORT; NEXT_PORT=$((NEXT_PORT + 1)); return 0; fi
    NEXT_PORT=$((NEXT_PORT + 1))
  done
  die "no free port in $PORT_BASE..$limit"
}

# Waits (bounded) until URL answers 2xx while PID is alive.
wait_http() {
  local name=$1 pid=$2 url=$3 logf=$4 i
  for ((i = 0; i < 100; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$logf" >&2 || true
      die "$name exited during startup (log above)"
    fi
    curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
    sleep 0.1
  done
  tail -n 20 "$logf" >&2 || true
  die "$name did not answer $url within ~10s"
}

# Direct children of a pid (nginx workers of their master, the curl of a
# traffic loop), read from /proc so that procps need not be installed.
children_of() {
  local parent=$1 f stat rest
  for f in /proc/[0-9]*/stat; do
    { stat=$(<"$f"); } 2>/dev/null || continue   # processes come and go
    rest=${stat##*) }            # drop "pid (comm) ", comm may contain spaces
    # shellcheck disable=SC2086  # split on purpose; fields hold no globs
    set -- $rest                 # $1=state $2=ppid
    [[ ${2:-} == "$parent" ]] && { f=${f#/proc/}; echo "${f%/stat}"; }
  done
  return 0
}
