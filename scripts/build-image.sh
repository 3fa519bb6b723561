#!/usr/bin/env bash
# Build the container-host base image from debootstrap (no registry is reachable here) and tag it with a hash
# of its recipe: an unchanged recipe reuses the image, a changed one rebuilds. The image is a bare systemd
# host; roles install every service package themselves, exactly as on a staging host.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE_REPO=localhost/gauntlet-base
started=$(date +%s)
SUITE=bookworm
# Packages every host needs to be managed like a real one (Ansible, faults, name resolution, CA trust).
INCLUDE=systemd,systemd-sysv,dbus,python3,python3-apt,iproute2,iptables,procps,sudo,ca-certificates,gnupg,kmod,less
# The controller's extra CA certificates (a TLS-inspecting proxy, for PyPI from inside hosts) join the recipe.
extra_cas=$(ls /usr/local/share/ca-certificates/*.crt 2>/dev/null || true)
recipe_hash=$( { sed -n '/^# RECIPE/,$p' "$0"; echo "$SUITE $INCLUDE"; [ -z "$extra_cas" ] || cat $extra_cas; } | sha256sum | cut -c1-12)
tag="$IMAGE_REPO:$recipe_hash"
command -v podman >/dev/null || { echo "build-image: podman is not installed: run 'make setup'" >&2; exit 1; }
if podman image exists "$tag"; then
  podman tag "$tag" "$IMAGE_REPO:latest"
  echo "==> [setup 5/5] base image ok ($tag)"
  echo "BENCH image_build_warm_seconds=$(( $(date +%s) - started ))"
  exit 0
fi
# RECIPE (everything from here on is hashed)
echo "==> [setup 5/5] building base image $tag with debootstrap (about a minute)"
t0=$(date +%s)
rootfs=$(mktemp -d /var/tmp/gauntlet-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$rootfs" >"$rootfs.log" 2>&1 \
  || { tail -20 "$rootfs.log" >&2; echo "build-image: debootstrap failed (log above)" >&2; exit 1; }
rm -f "$rootfs.log"
if [ -n "$extra_cas" ]; then cp $extra_cas "$rootfs/usr/local/share/ca-certificates/"; fi
chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
# A container host: no gettys, no udev settle waits, apt without recommends (smaller, faster converges).
chroot "$rootfs" systemctl mask getty.target console-getty.service systemd-udevd.service \
  systemd-udev-trigger.service systemd-networkd-wait-online.service >/dev/null 2>&1 || true
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' > "$rootfs/etc/apt/apt.conf.d/90gauntlet"
rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*
: > "$rootfs/etc/machine-id"
tar -C "$rootfs" -c . | podman import --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' - "$tag" >/dev/null
podman tag "$tag" "$IMAGE_REPO:latest"
echo "==> [setup 5/5] built $tag in $(( $(date +%s) - t0 ))s"
echo "BENCH image_build_cold_seconds=$(( $(date +%s) - t0 ))"
