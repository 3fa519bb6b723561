#!/usr/bin/env bash
# Prepare this machine to run gauntlet.cluster topologies on container hosts.
# Idempotent: every step checks first and says "ok" when nothing had to change.
#   1. Debian packages (podman with runc, debootstrap, iptables, ssh client; sshd for the unit tests, not started)
#   2. /etc/containers/containers.conf (runc + default ulimits below this machine's hard limits)
#   3. the Python venv (.venv) with the pinned, hashed dependencies of requirements.lock
#   4. the collection link, so gauntlet.cluster.* resolves to this checkout
#   5. the base image, built with debootstrap (no registry is reachable), tagged by a hash of its recipe
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${GAUNTLET_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}
IMAGE_REPO=localhost/gauntlet-base
step() { printf '==> [setup %s] %s\n' "$1" "$2"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@" || die "needs root for: $* (run as root or allow sudo)"; fi; }
t0=$(date +%s)

# 1. Debian packages -------------------------------------------------------------------------------------
# chromium: the report is checked in a real headless browser (tests/unit/test_report.py).
PACKAGES=(podman runc debootstrap iptables openssh-client uidmap chromium)
missing=()
for p in "${PACKAGES[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  step 1/5 "installing Debian packages: ${missing[*]}"
  command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} with your package manager"
  as_root apt-get update -q >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
else
  step 1/5 "Debian packages ok (${PACKAGES[*]})"
fi
# openssh-server: only its sshd binary, which the unit tests run on 127.0.0.1 with a config of their own
# (tests/unit/loopback_sshd.py). Installed here, the machine's ssh service is neither started nor enabled;
# an openssh-server that was already installed is left as it is.
if ! dpkg-query -W -f='${Status}' openssh-server 2>/dev/null | grep -q "ok installed"; then
  step 1/5 "installing openssh-server (sshd for the unit tests; the ssh service stays off)"
  no_start=
  if [ ! -e /usr/sbin/policy-rc.d ]; then   # Debian's switch that keeps a package's postinst from starting it
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null && as_root chmod 755 /usr/sbin/policy-rc.d
    no_start=1
  fi
  ssh_rc=0
  as_root apt-get update -q >/dev/null || ssh_rc=$?
  [ $ssh_rc -ne 0 ] || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    openssh-server >/dev/null || ssh_rc=$?
  [ -z "$no_start" ] || as_root rm -f /usr/sbin/policy-rc.d
  if command -v systemctl >/dev/null; then as_root systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true; fi
  [ $ssh_rc -eq 0 ] || die "installing openssh-server failed (exit $ssh_rc)"
fi

# 2. containers.conf ---------------------------------------------------------------------------------------
# Both runtimes fail with "setrlimit ... Operation not permitted" when the default ulimits exceed the hard
# limits of this machine, and crun fails on cgroup v1: pin runc and derive the ulimits from our own limits.
nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
[ "$nofile" = unlimited ] && nofile=1048576
[ "$nproc" = unlimited ] && nproc=32768
[ "$nproc" -gt 32768 ] && nproc=32768
conf=$(printf '# written by gauntlet.cluster scripts/setup-host.sh\n[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=%s:%s"]\n\n[engine]\nruntime = "runc"\n' \
  "$nofile" "$nofile" "$nproc" "$nproc")
if [ "$(cat /etc/containers/containers.conf 2>/dev/null)" != "$conf" ]; then
  step 2/5 "writing /etc/containers/containers.conf (runc, nofile=$nofile nproc=$nproc)"
  as_root mkdir -p /etc/containers
  printf '%s\n' "$conf" | as_root tee /etc/containers/containers.conf >/dev/null
else
  step 2/5 "containers.conf ok"
fi

# 3. venv ------------------------------------------------------------------------------------------------
# Every Python dependency from requirements.lock (pinned, hash-checked), then the project editable.
PYTHON=$PYTHON scripts/install-venv.sh "$VENV" | sed -u 's|^|==> [setup 3/5] |'

# 4. collection link -------------------------------------------------------------------------------------
link=.cache/collections/ansible_collections/gauntlet/cluster
if [ "$(readlink "$link" 2>/dev/null)" != "$ROOT" ]; then
  mkdir -p "$(dirname "$link")"; ln -sfn "$ROOT" "$link"
  step 4/5 "linked $link -> $ROOT"
else
  step 4/5 "collection link ok"
fi

# 5. base image ------------------------------------------------------------------------------------------
"$ROOT/scripts/build-image.sh"
printf '==> [setup] done in %ss\n' "$(( $(date +%s) - t0 ))"
