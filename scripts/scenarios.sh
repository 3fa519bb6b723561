#!/usr/bin/env bash
# Run the long topology and a queue of other jobs in lanes side by side, one converge at a time:
#   scripts/scenarios.sh LONG [JOB...]     (LONG may be "": the lanes take every JOB from the start)
# A JOB is a topology (scripts/scenario.sh NAME; citus: scripts/scenario-citus.sh) or one of the make
# targets unit and staging-proof.
# Lane 1 runs LONG (the default topology) from the start, then takes jobs from the queue; lanes 2 to
# $GAUNTLET_LANES (2 unless set) take jobs once LONG reaches its checks. Until then LONG's converge and
# idempotence pass have the machine to themselves: they keep both cores busy (with the unit tests beside it,
# default's converge took 451 s instead of 271 s), while checks and proofs mostly wait (TTLs, elections,
# faults held). After that one topology converges at a time (the slot, scripts/converge-slot.sh: held from
# its converge through its idempotence pass), and the checks of the lanes' jobs run side by side. A free
# lane takes the next job in the order given.
# Each job has its own report directory, hosts and network; its lines carry a [name] prefix. Exit: 0 when
# every job passed, else the status of the first that failed, after every job ran; the failed ones are named.
set -uo pipefail
cd "$(dirname "$0")/.."
long=${1-}; shift || true
report_root=${REPORT:-report}
case "$report_root" in /*) ;; *) report_root=$PWD/$report_root ;; esac
lanes=${GAUNTLET_LANES:-2}
[[ "$lanes" =~ ^[1-9][0-9]*$ ]] || { echo "scenarios: GAUNTLET_LANES=$lanes is not a number of lanes (1, 2, 3...)" >&2; exit 2; }
# LONG reaches its checks within this long of its start (create, converge, idempotence); past it the other
# lanes start anyway, so a stuck long run cannot stall them.
start_others_after_s=${GAUNTLET_BESIDE_AFTER_S:-1500}

state=$(mktemp -d "${TMPDIR:-/tmp}/gauntlet-lanes.XXXXXX")
export GAUNTLET_CONVERGE_LOCK=$state/converge.lock
# The queue: one file per job, taken by renaming it (atomic: of two lanes, one wins).
n=0
for name in "$@"; do printf '%s' "$name" > "$state/queue.$(printf %03d $n)"; n=$((n + 1)); done
take() {  # the next job's name on stdout, or status 1 when the queue is empty
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
  while name=$(take); do run_one "$1" "$name"; done
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
  echo "scenarios: interrupted, stopping the jobs"
  for p in "${lane_pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  wait
  rm -rf "$state"
  exit 130
}
trap stop_all INT TERM

wait_for_long_checks() {  # until LONG reaches its verify phase (it gave the converge slot back) or ended
  local waited=0
  while [ ! -e "$state/done.$long" ] && [ "$waited" -lt $((start_others_after_s * 2)) ]; do
    case "$(cat "$report_root/$long/current-phase" 2>/dev/null)" in verify | prove) return 0 ;; esac
    sleep 0.5; waited=$((waited + 1))
  done
}
long_then_lane_1() { run_one 1 "$long"; lane 1; }
t_all=$(date +%s)
first=1
if [ -n "$long" ]; then
  rm -f "$report_root/$long/current-phase"
  in_background_lane long_then_lane_1
  wait_for_long_checks
  echo "scenarios: $long is at '$(cat "$report_root/$long/current-phase" 2>/dev/null || echo ended)'; $lanes lanes take the queue"
  first=2
fi
for ((k = first; k <= lanes; k++)); do in_background_lane lane "$k"; done
for p in "${lane_pids[@]}"; do wait "$p"; done

failed=() first_rc=0
for name in ${long:+"$long"} "$@"; do
  read -r rc secs k 2>/dev/null < "$state/done.$name" || { rc=1 secs=0 k=none; }
  echo "scenarios: $name $([ "$rc" = 0 ] && echo passed || echo "FAILED (exit $rc)") in $secs s (lane $k)"
  if [ "$rc" != 0 ]; then
    failed+=("$name"); [ "$first_rc" = 0 ] && first_rc=$rc
  fi
done
rm -rf "$state"
echo "BENCH scenarios_seconds=$(( $(date +%s) - t_all )) s (lanes=$lanes${long:+ long: $long} queue: $*)"
[ ${#failed[@]} -eq 0 ] || { echo "scenarios: failed: ${failed[*]}"; exit "$first_rc"; }
