#!/usr/bin/env bash
# Run the long topology and a queue of other jobs in lanes side by side, one converge at a time:
#   scripts/scenarios.sh [--meanwhile JOB]... LONG [JOB...]     (LONG may be "": the lanes take every JOB)
# A JOB is a topology (scripts/scenario.sh NAME; citus: scripts/scenario-citus.sh) or one of the make
# targets unit and staging-proof.
# - Lane 1 runs LONG (the default topology) from the start, then takes jobs from the queue.
# - Lane 2 runs the --meanwhile jobs at once (the unit tests, during LONG's converge), then takes jobs.
# - Lanes 3..$GAUNTLET_LANES (3 unless set) take jobs.
# Lanes 2.. take their first queued job once LONG holds the converge slot (scripts/converge-slot.sh): a
# topology holds it from its converge through its idempotence pass, so converges run one after another --
# each keeps about 1.4 of the 2 cores busy -- while checks and proofs, which mostly wait (TTLs, elections,
# faults held), run side by side. A free lane takes the next job in the order given.
# Each job has its own report directory, hosts and network; its lines carry a [name] prefix. Exit: 0 when
# every job passed, else the status of the first that failed, after every job ran; the failed ones are named.
# A --meanwhile job that fails stops everything at once (as `make` stops at a failed unit test).
set -uo pipefail
cd "$(dirname "$0")/.."
meanwhile=()
while [ "${1-}" = --meanwhile ]; do meanwhile+=("$2"); shift 2; done
long=${1-}; shift || true
report_root=${REPORT:-report}
case "$report_root" in /*) ;; *) report_root=$PWD/$report_root ;; esac
lanes=${GAUNTLET_LANES:-3}
[[ "$lanes" =~ ^[1-9][0-9]*$ ]] || { echo "scenarios: GAUNTLET_LANES=$lanes is not a number of lanes (1, 2, 3...)" >&2; exit 2; }
# LONG takes the converge slot within this long of its start (destroying leftovers, creating its hosts);
# past it the other lanes start anyway, so a stuck long run cannot stall them.
start_others_after_s=${GAUNTLET_BESIDE_AFTER_S:-300}

state=$(mktemp -d "${TMPDIR:-/tmp}/gauntlet-lanes.XXXXXX")
export GAUNTLET_CONVERGE_LOCK=$state/converge.lock
# The queue: one file per job, taken by renaming it (atomic: of two lanes, one wins).
n=0
for name in "$@"; do printf '%s' "$name" > "$state/queue.$(printf %03d $n)"; n=$((n + 1)); done
take() {  # take LANE: the next job's name on stdout, or status 1 when the queue is empty
  local f
  for f in "$state"/queue.*; do
    [ -e "$f" ] || return 1
    if mv "$f" "$state/taken.${f##*.}" 2>/dev/null; then cat "$state/taken.${f##*.}"; return 0; fi
  done
  return 1
}

child=""
prefix() { sed -u "s/^/[$1] /"; }
run_one() {  # run_one LANE NAME: one job, its lines prefixed; its status, seconds and lane into $state
  local lane=$1 name=$2 t rc
  t=$(date +%s)
  case "$name" in
    citus) GAUNTLET_REPORT_DIR=$report_root/$name scripts/scenario-citus.sh > >(prefix "$name") 2>&1 & ;;
    unit | staging-proof) REPORT=$report_root make --no-print-directory "$name" > >(prefix "$name") 2>&1 & ;;
    *) GAUNTLET_REPORT_DIR=$report_root/$name scripts/scenario.sh "$name" > >(prefix "$name") 2>&1 & ;;
  esac
  child=$!
  wait "$child"; rc=$?
  child=""
  echo "$rc $(( $(date +%s) - t )) $lane" > "$state/done.$name"
  return "$rc"
}
lane() {  # lane N: take jobs from the queue until it is empty
  local name
  while name=$(take "$1"); do run_one "$1" "$name"; done
}
in_background_lane() {  # in_background_lane CMD...: CMD in a subshell that passes a TERM on to its job
  (
    trap '[ -n "$child" ] && kill -TERM "$child" 2>/dev/null; wait; exit 130' TERM
    "$@"
  ) &
  lane_pids+=($!)
}

lane_pids=()
stop_all() {
  local why rc
  read -r rc why 2>/dev/null < "$state/stop" || { rc=130 why=interrupted; }
  echo "scenarios: $why, stopping the jobs"
  for p in "${lane_pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  wait
  rm -rf "$state"
  exit "$rc"
}
trap stop_all INT TERM

wait_for_long_slot() {  # until LONG holds the converge slot (its phase is past destroy and create) or ended
  local waited=0
  [ -n "$long" ] || return 0
  while [ ! -e "$state/done.$long" ] && [ "$waited" -lt $((start_others_after_s * 2)) ]; do
    case "$(cat "$report_root/$long/current-phase" 2>/dev/null)" in "" | destroy | create) ;; *) return 0 ;; esac
    sleep 0.5; waited=$((waited + 1))
  done
}
long_then_lane_1() { run_one 1 "$long"; lane 1; }
meanwhile_then_lane_2() {
  for name in "${meanwhile[@]}"; do
    # a failed meanwhile job stops everything at once: the main shell's stop_all
    run_one 2 "$name" || { echo "$(cut -d' ' -f1 "$state/done.$name") $name failed" > "$state/stop"; kill -TERM $$; exit 1; }
  done
  [ "$lanes" -ge 2 ] || return 0
  wait_for_long_slot
  lane 2
}
t_all=$(date +%s)
if [ -n "$long" ]; then
  rm -f "$report_root/$long/current-phase"
  in_background_lane long_then_lane_1
  in_background_lane meanwhile_then_lane_2
  wait_for_long_slot
  echo "scenarios: $long is at '$(cat "$report_root/$long/current-phase" 2>/dev/null || echo ended)'; $lanes lanes take the queue"
  for ((k = 3; k <= lanes; k++)); do in_background_lane lane "$k"; done
else
  in_background_lane meanwhile_then_lane_2
  for ((k = 1; k <= lanes; k++)); do [ "$k" = 2 ] || in_background_lane lane "$k"; done
fi
for p in "${lane_pids[@]}"; do wait "$p"; done

failed=() first_rc=0
for name in "${meanwhile[@]}" ${long:+"$long"} "$@"; do
  read -r rc secs k 2>/dev/null < "$state/done.$name" || { rc=1 secs=0 k=none; }
  echo "scenarios: $name $([ "$rc" = 0 ] && echo passed || echo "FAILED (exit $rc)") in $secs s (lane $k)"
  if [ "$rc" != 0 ]; then
    failed+=("$name"); [ "$first_rc" = 0 ] && first_rc=$rc
  fi
done
rm -rf "$state"
echo "BENCH scenarios_seconds=$(( $(date +%s) - t_all )) s (lanes=$lanes${meanwhile[*]:+ meanwhile: ${meanwhile[*]}}${long:+ long: $long} queue: $*)"
[ ${#failed[@]} -eq 0 ] || { echo "scenarios: failed: ${failed[*]}"; exit "$first_rc"; }
