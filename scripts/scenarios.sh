#!/usr/bin/env bash
# Run the topologies `make test` runs, the short ones beside the long one's checks:
#   scripts/scenarios.sh LONG [OTHER...]      (LONG may be "" : then every OTHER runs one after another)
# LONG (the default topology) runs from the start. Its converge keeps both cores busy, but its checks and
# proof mostly wait (Patroni TTLs, elections, faults held), so once it reaches its verify phase the OTHER
# topologies run one after another beside it: about ten minutes of `make test` that used to run alone.
# Each topology is scripts/scenario.sh (citus: scripts/scenario-citus.sh) with its own report directory,
# hosts and network; lines on the terminal carry a [name] prefix. Exit: 0 when every topology passed, else
# the status of the first that failed, after every topology ran; the failed ones are named.
set -uo pipefail
cd "$(dirname "$0")/.."
long=${1-}; shift || true
report_root=${REPORT:-report}
# The long topology's verify phase begins within this long of its start (create + converge +
# idempotence); past it the others start anyway, so a stuck long run cannot stall them.
start_others_after_s=${GAUNTLET_BESIDE_AFTER_S:-1500}

declare -A status seconds
pids=()
prefix() { sed -u "s/^/[$1] /"; }
run_one() {  # run_one NAME: one topology in the foreground, its lines prefixed
  local name=$1 t rc
  t=$(date +%s)
  if [ "$name" = citus ]; then
    GAUNTLET_REPORT_DIR=$PWD/$report_root/$name scripts/scenario-citus.sh > >(prefix "$name") 2>&1
  else
    GAUNTLET_REPORT_DIR=$PWD/$report_root/$name scripts/scenario.sh "$name" > >(prefix "$name") 2>&1
  fi
  rc=$?
  status[$name]=$rc seconds[$name]=$(( $(date +%s) - t ))
}
stop_all() {
  echo "scenarios: interrupted, stopping ${pids[*]:-nothing}"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  wait
  exit 130
}
trap stop_all INT TERM

t_all=$(date +%s)
if [ -n "$long" ]; then
  t_long=$(date +%s)
  phase_file=$PWD/$report_root/$long/current-phase
  rm -f "$phase_file"
  GAUNTLET_REPORT_DIR=$PWD/$report_root/$long scripts/scenario.sh "$long" > >(prefix "$long") 2>&1 &
  long_pid=$!
  pids+=("$long_pid")
  # Wait (bounded) until the long topology checks, proves, or ends.
  waited=0
  while kill -0 "$long_pid" 2>/dev/null && [ "$waited" -lt "$start_others_after_s" ]; do
    case "$(cat "$phase_file" 2>/dev/null)" in verify|prove) break ;; esac
    sleep 1; waited=$((waited + 1))
  done
  echo "scenarios: $long is at '$(cat "$phase_file" 2>/dev/null || echo ended)' after ${waited}s; running ${*:-nothing} beside it"
fi
for name in "$@"; do run_one "$name"; done
if [ -n "$long" ]; then
  wait "$long_pid"; status[$long]=$? seconds[$long]=$(( $(date +%s) - t_long ))
fi

failed=() first_rc=0
for name in ${long:+"$long"} "$@"; do
  echo "scenarios: $name $([ "${status[$name]}" = 0 ] && echo passed || echo "FAILED (exit ${status[$name]})") in ${seconds[$name]} s"
  if [ "${status[$name]}" != 0 ]; then
    failed+=("$name"); [ "$first_rc" = 0 ] && first_rc=${status[$name]}
  fi
done
echo "BENCH scenarios_seconds=$(( $(date +%s) - t_all )) s (${long:+$long beside: }$*)"
[ ${#failed[@]} -eq 0 ] || { echo "scenarios: failed: ${failed[*]}"; exit "$first_rc"; }
