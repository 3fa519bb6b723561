# shellcheck shell=bash
# The converge slot, sourced by scripts/scenario.sh and scripts/staging-proof.sh: under scripts/scenarios.sh
# (which sets GAUNTLET_CONVERGE_LOCK) one topology converges at a time. A converge keeps about 1.4 of this
# machine's 2 cores busy (Ansible's controller and the modules on the hosts: measured 70 % busy, 21 % idle),
# while checks mostly wait (TTLs, elections, faults held); so the lanes' checks run side by side, their
# converges one after another, and the long topology, which takes the slot first, is not slowed by the
# others'. Outside the lanes (GAUNTLET_CONVERGE_LOCK unset) both functions do nothing.
# The slot is fd 8 of the calling shell; commands run with `8>&-` so no daemon they start can hold it.

take_converge_slot() {  # take_converge_slot NAME: wait for the slot (a BENCH line says how long)
  [ -n "${GAUNTLET_CONVERGE_LOCK:-}" ] || return 0
  local t
  t=$(date +%s)
  exec 8>"$GAUNTLET_CONVERGE_LOCK"
  flock 8
  echo "BENCH converge_slot_wait_$1_seconds=$(( $(date +%s) - t )) s"
}

give_converge_slot() {
  [ -n "${GAUNTLET_CONVERGE_LOCK:-}" ] || return 0
  flock -u 8
  exec 8>&-
}
