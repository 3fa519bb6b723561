#!/usr/bin/env bash
# Run the citus scenario (molecule test -s citus) with the Citus install source taken from the environment,
# or skip it with one line when there is none. Citus is not in Debian and its vendor repository may not be
# reachable, so the source is the caller's choice (README, "Citus"):
#   GAUNTLET_CITUS_DEBS_DIR=/path/to/debs   local_debs: a controller directory of Citus .deb files
#   GAUNTLET_CITUS_IMAGE=<image>            preinstalled: a host image with PostgreSQL + Citus installed
#   GAUNTLET_CITUS_INSTALL_METHOD=repo      the vendor's apt repository (hosts must reach it)
# GAUNTLET_CITUS_INSTALL_METHOD may also be set explicitly with either of the first two.
# Exit status: molecule's, or 0 when skipped. GAUNTLET_REPORT_DIR defaults to report/citus.
set -uo pipefail
cd "$(dirname "$0")/.."

method=${GAUNTLET_CITUS_INSTALL_METHOD:-}
debs=${GAUNTLET_CITUS_DEBS_DIR:-}
image=${GAUNTLET_CITUS_IMAGE:-}
if [ -z "$method" ]; then
  if [ -n "$debs" ]; then method=local_debs
  elif [ -n "$image" ]; then method=preinstalled
  fi
fi

skip() { echo "SKIP citus: $*"; exit 0; }
case "$method" in
  "")
    skip "no Citus install source (set GAUNTLET_CITUS_DEBS_DIR=/path/to/debs or GAUNTLET_CITUS_IMAGE=<image with Citus> — see README 'Citus')" ;;
  local_debs)
    [ -n "$debs" ] || skip "GAUNTLET_CITUS_INSTALL_METHOD=local_debs but GAUNTLET_CITUS_DEBS_DIR is not set (see README 'Citus')"
    compgen -G "$debs/*.deb" >/dev/null || skip "GAUNTLET_CITUS_DEBS_DIR=$debs holds no .deb files (see README 'Citus')"
    debs=$(cd "$debs" && pwd) ;;
  preinstalled)
    image=${image:-${GAUNTLET_IMAGE:-}}
    [ -n "$image" ] || skip "GAUNTLET_CITUS_INSTALL_METHOD=preinstalled but no GAUNTLET_CITUS_IMAGE (see README 'Citus')"
    podman image exists "$image" || skip "GAUNTLET_CITUS_IMAGE=$image does not exist in podman's image store (see README 'Citus')"
    export GAUNTLET_IMAGE=$image ;;
  repo) ;;
  *)
    echo "citus: GAUNTLET_CITUS_INSTALL_METHOD must be repo, local_debs or preinstalled, not '$method'" >&2
    exit 2 ;;
esac

export GAUNTLET_CITUS_INSTALL_METHOD=$method GAUNTLET_CITUS_DEBS_DIR=$debs
export GAUNTLET_REPORT_DIR=${GAUNTLET_REPORT_DIR:-$PWD/report/citus}
echo "==> citus (Citus from: $method${debs:+ $debs}${GAUNTLET_IMAGE:+, image $GAUNTLET_IMAGE})"
exec scripts/scenario.sh citus "$@"
