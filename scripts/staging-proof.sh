#!/usr/bin/env bash
# The SSH-staging proof: treat a few bare containers as "staging" machines reached over SSH, exactly as
# the README tells users to run their own hosts, and run the same checks as the container run.
#
#   make staging-proof                          # etcd topology (3 hosts)
#   STAGING_TOPOLOGY=patroni make staging-proof # pg1..pg3 + lb1
#
# 1. starts one bare systemd container per host of molecule/<topology>/molecule.yml (names stg-<host>, on a
#    network of the proof's own), installs openssh-server in it and creates a sudo user `admin` (like a
#    Debian cloud image), authorizes a freshly generated key (0600, under .cache/staging-proof/);
# 2. writes an inventory whose group_vars ARE the example's (symlinks to inventories/staging/group_vars, plus
#    a vault made from its vault.yml.example and encrypted with a generated password) and whose hosts are
#    reached with ansible_connection ssh (host keys accepted-new into the proof's own known_hosts);
# 3. runs the README's staging commands: ansible-playbook -i INV playbooks/site.yml, then
#    gauntlet run --inventory INV --skip-provision; then the SSH-path fault checks (tests/staging);
# 4. checks that every test the container run selects (molecule/<topology>/topology.yml) passed here too;
# 5. removes the containers and the network, even on failure (STAGING_KEEP=1 keeps them for debugging).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TOPOLOGY=${STAGING_TOPOLOGY:-etcd}
REPORT=${REPORT:-report}
IMAGE=${GAUNTLET_IMAGE:-localhost/gauntlet-base:latest}
WORK=$ROOT/.cache/staging-proof/$TOPOLOGY
NETWORK=gauntlet-staging-proof-$TOPOLOGY
PREFIX=stg-
SSH_USER=admin
export ANSIBLE_CONFIG=$ROOT/ansible.cfg
started=$(date +%s)

die() { echo "staging-proof: $*" >&2; exit 1; }
step() { echo "==> [staging-proof] $*"; }

[ -f "molecule/$TOPOLOGY/molecule.yml" ] \
  || die "no topology '$TOPOLOGY': set STAGING_TOPOLOGY to one of $(ls molecule | grep -v '^_' | tr '\n' ' ')"
command -v podman >/dev/null || die "podman is not installed: run 'make setup'"
podman image exists "$IMAGE" || die "image $IMAGE is missing: run 'make setup'"
for tool in ssh ssh-keygen ansible-playbook gauntlet python3; do
  command -v "$tool" >/dev/null || die "$tool is not on PATH: run 'make setup' (and use the Makefile or .venv/bin)"
done

# Hosts and groups of the topology, as the container run has them: "name group,group" lines.
mapfile -t PLATFORMS < <(python3 - "$TOPOLOGY" <<'EOF'
import sys, yaml
for p in yaml.safe_load(open(f"molecule/{sys.argv[1]}/molecule.yml"))["platforms"]:
    print(p["name"], ",".join(p.get("groups", [])))
EOF
)
HOSTS=()
for line in "${PLATFORMS[@]}"; do HOSTS+=("${line%% *}"); done

teardown() {
  rc=$?
  if [ "${STAGING_KEEP:-0}" = 1 ]; then
    echo "staging-proof: STAGING_KEEP=1: hosts left running (inventory $INV); remove them with:"
    echo "  podman rm -f ${HOSTS[*]/#/$PREFIX}; podman network rm $NETWORK"
  else
    step "removing the staging hosts"
    for h in "${HOSTS[@]}"; do podman rm -f -t 5 "$PREFIX$h" >/dev/null 2>&1 || true; done
    podman network rm -f "$NETWORK" >/dev/null 2>&1 || true
  fi
  echo "BENCH staging_proof_seconds=$(( $(date +%s) - started )) s ($TOPOLOGY)"
  [ $rc -eq 0 ] && echo "staging-proof: PASSED ($TOPOLOGY)" || echo "staging-proof: FAILED ($TOPOLOGY, exit $rc)"
  exit $rc
}

# A fresh start: the proof's own hosts, network, key, CA and secrets only (never another scenario's).
INV=$WORK/staging-$TOPOLOGY
for h in "${HOSTS[@]}"; do podman rm -f -t 5 "$PREFIX$h" >/dev/null 2>&1 || true; done
podman network rm -f "$NETWORK" >/dev/null 2>&1 || true
rm -rf "$WORK"
mkdir -p "$WORK/ssh" "$INV/group_vars/all"
chmod 700 "$WORK" "$WORK/ssh"
trap teardown EXIT
trap 'exit 130' INT TERM   # a signal ends the run through the EXIT trap: the hosts are removed

step "1/6 starting ${#HOSTS[@]} bare hosts (${HOSTS[*]/#/$PREFIX}) on network $NETWORK"
podman network create --label gauntlet_scenario=staging-proof "$NETWORK" >/dev/null
for h in "${HOSTS[@]}"; do
  # The same runtime settings as the Molecule hosts (molecule/_shared/create.yml): systemd as PID 1 and
  # NET_ADMIN for the nemesis' iptables rules; nothing else is installed.
  podman run -d --name "$PREFIX$h" --hostname "$h" --network "$NETWORK" --cap-add NET_ADMIN \
    --systemd always --label gauntlet_scenario=staging-proof "$IMAGE" /sbin/init >/dev/null
done
for h in "${HOSTS[@]}"; do
  state=$(podman exec "$PREFIX$h" timeout 60 systemctl is-system-running --wait || true)
  case $state in running|degraded) ;; *) die "$PREFIX$h: systemd did not come up (state '$state')";; esac
done

step "2/6 installing openssh-server, user $SSH_USER (passwordless sudo) and the proof's key"
ssh-keygen -q -t ed25519 -N '' -C "gauntlet-staging-proof" -f "$WORK/ssh/id_ed25519"  # created 0600
pids=()
for h in "${HOSTS[@]}"; do
  podman exec -i "$PREFIX$h" sh -euc "
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get -q update >/dev/null
    timeout 300 apt-get -q install -y --no-install-recommends openssh-server >/dev/null
    id $SSH_USER >/dev/null 2>&1 || useradd -m -s /bin/bash $SSH_USER
    echo '$SSH_USER ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/90-$SSH_USER && chmod 0440 /etc/sudoers.d/90-$SSH_USER
    install -d -m 0700 -o $SSH_USER -g $SSH_USER /home/$SSH_USER/.ssh
    cat > /home/$SSH_USER/.ssh/authorized_keys
    chown $SSH_USER:$SSH_USER /home/$SSH_USER/.ssh/authorized_keys && chmod 0600 /home/$SSH_USER/.ssh/authorized_keys
    systemctl enable --now ssh >/dev/null 2>&1
  " < "$WORK/ssh/id_ed25519.pub" > "$WORK/ssh/install-$h.log" 2>&1 &
  pids+=($!)
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { cat "$WORK/ssh/install-${HOSTS[$i]}.log" >&2; die "installing sshd on $PREFIX${HOSTS[$i]} failed (above)"; }
done

declare -A ADDR
for h in "${HOSTS[@]}"; do
  ADDR[$h]=$(podman inspect -f "{{(index .NetworkSettings.Networks \"$NETWORK\").IPAddress}}" "$PREFIX$h")
  [ -n "${ADDR[$h]}" ] || die "$PREFIX$h has no address on $NETWORK"
done

# Every SSH connection of the proof (Ansible's and this script's): its own key and known_hosts, new host keys
# accepted once and checked from then on.
SSH_OPTS="-o UserKnownHostsFile=$WORK/ssh/known_hosts -o StrictHostKeyChecking=accept-new -o IdentitiesOnly=yes"
step "3/6 waiting for sshd on every host (host keys accepted-new into $WORK/ssh/known_hosts)"
for h in "${HOSTS[@]}"; do
  ok=
  for _ in $(seq 60); do
    # shellcheck disable=SC2086
    if ssh $SSH_OPTS -i "$WORK/ssh/id_ed25519" -o BatchMode=yes -o ConnectTimeout=3 \
        "$SSH_USER@${ADDR[$h]}" sudo -n true 2>/dev/null; then ok=1; break; fi
    sleep 1
  done
  [ -n "$ok" ] || die "no SSH (with sudo) to $SSH_USER@${ADDR[$h]} ($PREFIX$h) within 60 s"
done

step "4/6 writing the inventory $INV (group_vars: inventories/staging's own)"
# group_vars: every file of the example, linked (so the example itself is what is proven) ...
for f in inventories/staging/group_vars/*; do
  name=$(basename "$f")
  if [ -d "$f" ]; then
    mkdir -p "$INV/group_vars/$name"
    for g in "$f"/*; do
      case $g in *.example) continue;; esac
      ln -s "$ROOT/$g" "$INV/group_vars/$name/$(basename "$g")"
    done
  else
    ln -s "$ROOT/$f" "$INV/group_vars/$name"
  fi
done
# ... plus the vault the example describes: its values generated, encrypted with a generated password that
# ansible-playbook and the harness both read from ANSIBLE_VAULT_PASSWORD_FILE.
if [ -f inventories/staging/group_vars/all/vault.yml.example ]; then
  old_umask=$(umask); umask 077  # the plaintext vault and its password are created 0600, not chmod-ed after
  python3 - inventories/staging/group_vars/all/vault.yml.example "$INV/group_vars/all/vault.yml" <<'EOF'
import re, secrets, sys
text = open(sys.argv[1]).read()
text = re.sub(r"CHANGE-ME", lambda _: secrets.token_urlsafe(18).replace("-", "x").replace("_", "y"), text)
open(sys.argv[2], "w").write(text)
EOF
  python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > "$WORK/vault-password"
  umask "$old_umask"
  export ANSIBLE_VAULT_PASSWORD_FILE=$WORK/vault-password
  ansible-vault encrypt "$INV/group_vars/all/vault.yml" >/dev/null
fi
# hosts.yml: the example's connection settings (all.vars) with the proof's key and known_hosts added; the
# hosts and groups of the topology, each at its container's address.
host_addrs=()
for line in "${PLATFORMS[@]}"; do host_addrs+=("$line ${ADDR[${line%% *}]}"); done
python3 - "$INV/hosts.yml" "$WORK" "$SSH_OPTS" "molecule/$TOPOLOGY/hosts.yml" "${host_addrs[@]}" <<'EOF'
import os, sys, yaml
out, work, ssh_opts, scenario_hosts, lines = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
example = yaml.safe_load(open("inventories/staging/hosts.yml"))
all_vars = dict(example["all"].get("vars") or {})
all_vars.update(
    ansible_connection="ssh",
    ansible_ssh_private_key_file=f"{work}/ssh/id_ed25519",
    ansible_ssh_common_args=ssh_opts,
    # Host keys checked (Ansible's default, said here so no config or environment turns it off for the
    # proof): new keys accepted once into the proof's own known_hosts (accept-new above), then checked.
    ansible_ssh_host_key_checking=True,
)
children = {}
for line in lines:
    name, groups, address = line.split(" ")
    for g in filter(None, groups.split(",")):
        children.setdefault(g, {"hosts": {}})["hosts"][name] = {"ansible_host": address}
# The scenario's declared client API (custom_server_api, known in one place: molecule/<topology>/hosts.yml),
# so the declared-API checks the container run passed run over SSH too; its other values are Molecule's.
scenario = yaml.safe_load(open(scenario_hosts)) if os.path.exists(scenario_hosts) else {}
for g, body in (scenario or {}).items():
    api = ((body or {}).get("vars") or {}).get("custom_server_api")
    if api is not None and g in children:
        children[g]["vars"] = {"custom_server_api": api}
doc = {"all": {"vars": all_vars, "children": children}}
head = "# Written by scripts/staging-proof.sh: the staging example's settings, this proof's hosts.\n"
open(out, "w").write(head + yaml.safe_dump(doc, sort_keys=False))
EOF
ansible-inventory -i "$INV" --graph

step "5/6 the README's staging commands"
echo "\$ ansible-playbook -i $INV playbooks/site.yml"
# the converge slot of scripts/scenarios.sh's lanes (one converge at a time; nothing outside them)
# shellcheck source=scripts/converge-slot.sh
. scripts/converge-slot.sh
take_converge_slot staging-proof
ansible-playbook -i "$INV" playbooks/site.yml 8>&-
give_converge_slot
echo "\$ gauntlet run --inventory $INV --skip-provision --report $REPORT"
gauntlet_rc=0
gauntlet run --inventory "$INV" --skip-provision --report "$REPORT" || gauntlet_rc=$?

step "6/6 faults over SSH (tests/staging) and the container run's checks"
faults_rc=0
pytest tests/staging -p no:cacheprovider -v --inventory "$INV" --report-dir "$REPORT/staging-$TOPOLOGY-faults" \
  || faults_rc=$?
# Every check the container run selects (its topology.yml selection) must have passed in this run.
compare_rc=0
python3 tests/staging/compare_runs.py "$TOPOLOGY" "$INV" "$REPORT/staging-$TOPOLOGY/junit.xml" || compare_rc=$?
[ $gauntlet_rc -eq 0 ] || die "gauntlet run failed (exit $gauntlet_rc)"
[ $faults_rc -eq 0 ] || die "the SSH fault checks failed (exit $faults_rc)"
[ $compare_rc -eq 0 ] || die "the container run's checks did not all pass over SSH (list above)"
