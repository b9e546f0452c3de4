#!/usr/bin/env bash
# scripts/demo-canary.sh (`make demo-canary`): a canary rollout decided by
# the gateway, end to end. It starts iris-v1 as the stable pool and iris-v2
# as the candidate, a gateway whose route moves the candidate through
# steps of 5, 25, 50 and 100% (5 s a step at least, 50 requests of each
# pool, sticky by X-User-Id), and steady traffic from 1000 users in turn.
# Every second it prints the rollout as GET /admin/rollouts shows it; at
# every new step it asks the same 100 users which pool answers them, to
# show that a user who got the candidate keeps it as its share grows. Once
# the candidate is promoted it prints the history and the metrics.
#
# Exit 0 when the rollout is promoted within DEMO_DEADLINE seconds (110)
# of the gateway's start; 1 when it rolls back, pauses, takes longer, or a
# user went back from the candidate to the stable pool. Every process it
# started is stopped on exit, Ctrl-C included. Knobs: see scripts/demo-lib.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/demo-lib.sh
source scripts/demo-lib.sh

PROBED=100   # users asked at every step: user-0 .. user-99

main() {
  local j state step last_step=-1 prev="" now i on kept lost
  demo_start
  load_start
  echo
  progress_header
  while :; do
    poll
    if [[ $step != "$last_step" || $state == promoted ]]; then
      # Sticky monotonicity: who had the candidate at the last step has it now.
      now=$(probe 0 "$PROBED" | tr '\n' ' ')
      read -ra cur <<<"$now"
      ((${#cur[@]} == PROBED)) || die "the probe got ${#cur[@]} answers of $PROBED"
      on=0 kept=0 lost=()
      read -ra before <<<"$prev"
      for ((i = 0; i < PROBED; i++)); do
        [[ ${cur[i]} == candidate ]] && on=$((on + 1))
        if [[ ${before[i]:-} == candidate ]]; then
          if [[ ${cur[i]} == candidate ]]; then kept=$((kept + 1)); else lost+=("user-$i"); fi
        fi
      done
      printf '       sticky: %d of user-0..user-%d on the candidate' "$on" $((PROBED - 1))
      [[ -n $prev ]] && printf ', %d of the last step'"'"'s kept it' "$kept"
      echo
      ((${#lost[@]} == 0)) || die "users went back from the candidate to stable: ${lost[*]}"
      prev=$now last_step=$step
    fi
    case $state in
      promoted) break ;;
      rolled_back | paused)
        echo
        print_history "$j"
        die "the rollout ended $state, not promoted: $(jq -r .reason <<<"$j")"
        ;;
    esac
    ((SECONDS <= DEADLINE)) || die "not promoted after ${DEADLINE}s (state $state, step $step)"
    sleep 1
  done
  local took=$SECONDS
  load_stop
  echo
  print_history "$j"
  echo
  rollout_metrics
  echo
  echo "state kept in state_dir: rollout-$ROUTE.json says $(jq -r '"\(.state), step \(.step), \(.percent)%"' "$TMP/state/rollout-$ROUTE.json")"
  echo "demo-canary: PASS: iris-v2 promoted to 100% in ${took}s"
}

main "$@"
