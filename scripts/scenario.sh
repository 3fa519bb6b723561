#!/usr/bin/env bash
# Run one topology on container hosts, phase by phase, and time every phase:
#   scripts/scenario.sh NAME [--no-idempotence] [--no-prove] [--keep]
# destroy (leftovers) → create → converge (--diff) → secrets-in-log → idempotence → verify → prove (when its topology.yml names a
# proof) → destroy, as `molecule test` does plus the planted-defect proof, with a
# BENCH line per phase and one for the whole run. The checks' output (pytest, via molecule/_shared/verify.yml)
# streams to the terminal while they run. The hosts are destroyed at the end, on failure, and on INT/TERM
# (unless --keep). Exit status: the first failing phase's, whose name it writes to $GAUNTLET_REPORT_DIR/failed-phase.
set -uo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: scripts/scenario.sh NAME [--no-idempotence] [--no-prove] [--keep]}; shift
idempotence=1 keep=0 prove=1
for a in "$@"; do
  case "$a" in
    --no-idempotence) idempotence=0 ;;
    --no-prove) prove=0 ;;
    --keep) keep=1 ;;
    *) echo "scenario: unknown option '$a' (use --no-idempotence, --no-prove or --keep)" >&2; exit 2 ;;
  esac
done
[ -f "molecule/$name/topology.yml" ] || { echo "scenario: no topology '$name' (molecule/$name/topology.yml)" >&2; exit 2; }
# Podman container names are machine-wide: a second run of the same topology (another checkout, a CI job)
# waits for the first instead of destroying its hosts.
lock=${TMPDIR:-/tmp}/gauntlet-scenario-$name.lock
exec 9>"$lock"
if ! flock -n 9; then
  echo "scenario $name: another run of it holds $lock; waiting"
  flock 9
fi
report=${GAUNTLET_REPORT_DIR:-$PWD/report/$name}
# The marker says gauntlet made this directory: `gauntlet run` removes no run directory without it.
[ -d "$report" ] || { mkdir -p "$report" && : > "$report/.gauntlet-run"; }
rm -f "$report/failed-phase"
export GAUNTLET_REPORT_DIR=$report GAUNTLET_VERIFY_LOG=$report/verify.log
: > "$GAUNTLET_VERIFY_LOG"
tailer=
cleanup() {
  [ -n "$tailer" ] && kill "$tailer" 2>/dev/null
  if [ "$keep" = 0 ]; then molecule destroy -s "$name" >/dev/null 2>&1 || true; fi
}
trap 'echo "scenario $name: interrupted, removing its hosts"; cleanup; exit 130' INT TERM
t_all=$(date +%s)
phase() {  # phase NAME CMD... : run, time, and stop the run at the first failure
  local p=$1 t rc; shift
  echo "==> [$name] $p"
  echo "$p" > "$report/current-phase"  # scripts/scenarios.sh starts its other lanes at the long one's verify
  t=$(date +%s)
  "$@" 8>&-; rc=$?
  echo "BENCH molecule_${p}_${name}_seconds=$(( $(date +%s) - t )) s"
  if [ $rc -ne 0 ]; then
    echo "scenario $name: $p failed (exit $rc)"
    echo "$p" > "$report/failed-phase"  # gauntlet run: a verify/prove failure is the checks', any other provisioning's
    cleanup
    echo "BENCH molecule_test_${name}_seconds=$(( $(date +%s) - t_all )) s"
    exit $rc
  fi
}
phase destroy molecule destroy -s "$name"
phase create molecule create -s "$name"
# Converge with --diff, as a user would to see what changes: its log must hold none of the secrets the run
# generated (gauntlet.secrets_scan: every password file and private key of the scenario).
converge_with_diff() { molecule converge -s "$name" -- --diff 2>&1 | tee "$report/converge.log"; }
# Under scripts/scenarios.sh's lanes, one topology converges at a time (the slot: scripts/converge-slot.sh).
# shellcheck source=scripts/converge-slot.sh
. scripts/converge-slot.sh
take_converge_slot "$name"
phase converge converge_with_diff
phase secrets-in-log python -m gauntlet.secrets_scan "$report/converge.log" --scenario "$name"
[ "$idempotence" = 1 ] && phase idempotence molecule idempotence -s "$name"
give_converge_slot
# Stream the checks as they run (the verify playbook itself prints only the end).
tail -n 0 -F "$GAUNTLET_VERIFY_LOG" 2>/dev/null & tailer=$!
GAUNTLET_VERIFY_STREAMED=1 phase verify molecule verify -s "$name"
# The planted-defect proof (molecule/_shared/prove.yml, Molecule's side effect) of a topology that names one;
# its lines stream through the same file.
if [ "$prove" = 1 ] && [ -n "$(python -m gauntlet.topologies proof "$name")" ]; then
  GAUNTLET_VERIFY_STREAMED=1 phase prove molecule side-effect -s "$name"
fi
kill "$tailer" 2>/dev/null; tailer=
[ "$keep" = 1 ] || phase destroy molecule destroy -s "$name"
echo "BENCH molecule_test_${name}_seconds=$(( $(date +%s) - t_all )) s"
