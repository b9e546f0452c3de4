#!/usr/bin/env bash
# scripts/demo-rollback.sh (`make demo-rollback`): a canary rollout that the
# gateway rolls back. The same stack as scripts/demo-canary.sh (iris-v1
# stable, iris-v2 candidate, steps 5, 25, 50, 100%, 5 s and 50 requests of
# each pool a step at least, sticky by X-User-Id), but the candidate worker
# fails a fifth of its predictions (-fail-rate 0.2). Once the candidate has
# answered 50 requests at the first step, its success rate against the
# stable's fails the success_ratio gate and the gateway sends it no more
# traffic. The demo prints the progress every second, then the reason, the
# gate values and the numbers the decision was taken on, and checks that
# the candidate gets nothing afterwards: its request count stands still
# under traffic, and every one of 100 users, those who had the candidate
# at 5% included, is answered by the stable pool (X-Sluice-Variant).
#
# Exit 0 when the rollout is rolled back by the gateway within
# DEMO_DEADLINE seconds (110) of the gateway's start and the candidate gets
# no request afterwards; 1 otherwise. Every process it started is stopped
# on exit, Ctrl-C included. Knobs: see scripts/demo-lib.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/demo-lib.sh
source scripts/demo-lib.sh

PROBED=100         # users asked before and after: user-0 .. user-99
QUIET_SECONDS=3    # traffic after the rollback during which the candidate must get nothing

CANDIDATE_FLAGS=(-fail-rate 0.2)

main() {
  local j state step ev took before after i on=0 stable_now=0 had=() answers
  demo_start
  # Who has the candidate at the first step (5%), asked before the traffic.
  read -ra answers <<<"$(probe 0 "$PROBED" | tr '\n' ' ')"
  for ((i = 0; i < ${#answers[@]}; i++)); do
    [[ ${answers[i]} == candidate ]] && had+=("user-$i")
  done
  echo "before: ${#had[@]} of user-0..user-$((PROBED - 1)) on the candidate at 5%: ${had[*]:-none}"
  load_start
  echo
  progress_header
  while :; do
    poll
    case $state in
      rolled_back) break ;;
      promoted | paused)
        echo
        print_history "$j"
        die "the rollout ended $state, not rolled back: $(jq -r .reason <<<"$j")"
        ;;
    esac
    ((SECONDS <= DEADLINE)) || die "not rolled back after ${DEADLINE}s (state $state, step $step)"
    sleep 1
  done
  took=$SECONDS

  # The decision, as the history keeps it (and the webhook would post it).
  ev=$(jq -c '[.history[] | select(.event == "rolled_back")] | last' <<<"$j")
  [[ $(jq -r .by <<<"$ev") == gateway ]] || die "rolled back, but not by the gateway: $(jq -r .reason <<<"$ev")"
  echo
  echo "rolled back after ${took}s at step $(jq -r .step <<<"$ev") ($(jq -r .percent <<<"$(jq -c '[.history[] | select(.event != "rolled_back")] | last' <<<"$j")")% for the candidate)"
  echo "reason: $(jq -r .reason <<<"$ev")"
  echo "gates:"
  jq -r '.gates[] | "  \(.name): \(if .value == null then "n/a" else (.value * 1000 | round / 1000 | tostring) end) against \(.threshold), \(if .pass then "held" else "FAILED" end): \(.detail)"' <<<"$ev"
  jq -r '.window | "numbers of the step: stable \(.stable.requests) requests, \(.stable.errors) failed, p99 \(.stable.p99_ns / 1e6)ms; candidate \(.candidate.requests) requests, \(.candidate.errors) failed, p99 \(.candidate.p99_ns / 1e6)ms"' <<<"$ev"

  # After the rollback: the traffic goes on, the candidate gets nothing.
  # (Requests already on their way to it when the decision fell may still
  # finish: count from a moment later.)
  sleep 0.5
  before=$(metric_sum sluice_requests_total "route=\"$ROUTE\"" 'variant="candidate"')
  echo
  echo "after the rollback, ${QUIET_SECONDS}s more traffic:"
  for ((i = 0; i < QUIET_SECONDS; i++)); do
    sleep 1
    progress_line "$(rollout)"
  done
  after=$(metric_sum sluice_requests_total "route=\"$ROUTE\"" 'variant="candidate"')
  read -ra answers <<<"$(probe 0 "$PROBED" | tr '\n' ' ')"
  for ((i = 0; i < ${#answers[@]}; i++)); do
    case ${answers[i]} in
      stable) stable_now=$((stable_now + 1)) ;;
      candidate) on=$((on + 1)) ;;
    esac
  done
  load_stop
  echo "candidate requests (sluice_requests_total{variant=\"candidate\"}): $before then $after"
  echo "user-0..user-$((PROBED - 1)) now: $stable_now answered by stable, $on by the candidate (${#had[@]} had the candidate before)"
  echo
  print_history "$(rollout)"
  echo
  rollout_metrics
  echo
  ((after == before)) || die "the candidate got $((after - before)) requests after the rollback"
  ((stable_now == PROBED)) || die "$((PROBED - stable_now)) of $PROBED users were not answered by the stable pool after the rollback"
  echo "demo-rollback: PASS: iris-v2 rolled back in ${took}s; no request reached it afterwards"
}

main "$@"
