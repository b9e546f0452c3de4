#!/usr/bin/env bash
# scripts/soak.sh: the soak (internal/soaktest) at full length. It builds
# the gateway and the model worker, starts Redis and six model workers,
# and sends a constant-rate load through the gateway while workers are
# killed, hung and made to fail, Redis is stopped and paused, and the
# config is rewritten with valid and invalid files; then prints the
# report and fails if a request failed other than those in flight on a
# killed worker, if anything panicked, if the gateway's memory or
# goroutines grew, or if an invalid config was applied.
#
# Knobs (environment):
#   SOAK_DURATION   how long the load runs, a Go duration  (default 5m)
#   SOAK_RATE       requests per second                     (default 300)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export SOAK_DURATION=${SOAK_DURATION:-5m}
export SOAK_RATE=${SOAK_RATE:-300}

scripts/deps.sh redis-server=redis-server >&2

report=$(mktemp "${TMPDIR:-/tmp}/sluice-soak.XXXXXX")
trap 'rm -f "$report"' EXIT
export SOAK_REPORT=$report

# -v: the test logs the report as it ends; the time limit is generous
# (SOAK_DURATION plus building, starting and stopping the stack).
rc=0
go test -count=1 -timeout 30m -run '^TestSoak$' -v ./internal/soaktest/ || rc=$?
echo
if [[ -s $report ]]; then
  cat "$report"
else
  echo "soak: no report was written (the test failed before the end; see above)"
fi
if ((rc == 0)); then echo "soak: PASS"; else echo "soak: FAIL"; fi
exit "$rc"
