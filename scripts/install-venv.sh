#!/usr/bin/env bash
# The Python venv of this checkout (step 3 of scripts/setup-host.sh): every dependency from requirements.lock
# (pinned, each file checked against its hash), then the project itself, editable and without dependencies.
# Idempotent: a stamp in the venv holds the hashes of pyproject.toml and requirements.lock, so a change to
# either reinstalls and nothing else does.
#   scripts/install-venv.sh [VENV]     (default: $GAUNTLET_VENV or .venv; PYTHON picks the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-${GAUNTLET_VENV:-$PWD/.venv}}
PYTHON=${PYTHON:-python3}
LOCK=requirements.lock
[ -f "$LOCK" ] || { echo "install-venv: $LOCK is missing (make lock writes it)" >&2; exit 1; }
stamp="$VENV/.gauntlet-deps"
want="pyproject.toml $(sha256sum < pyproject.toml | cut -c1-16) $LOCK $(sha256sum < "$LOCK" | cut -c1-16)"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "venv ok ($VENV)"
  exit 0
fi
echo "installing Python dependencies from $LOCK into $VENV"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# (this machine's pip config names local mirrors that may be absent: its warnings are noise)
pip() { "$VENV/bin/pip" "$@" --disable-pip-version-check 2> >(grep -v '^WARNING: Location' >&2); }
pip install -q --require-hashes -r "$LOCK"
# The lock holds the build backend (setuptools, wheel): the editable build uses them, nothing is fetched.
pip install -q --no-deps --no-build-isolation -e .
echo "$want" > "$stamp"
