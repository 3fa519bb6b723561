"""Fault command construction: what each fault runs on a host, and how it is undone. The shaping and dead-man
commands also run here, under sh, against stand-ins for tc, ip, iptables, systemctl and systemd-run that keep
their state in files (no host is touched)."""

import os
import stat
import subprocess
import textwrap

import pytest

from gauntlet.nemesis import commands

PEERS = ["10.0.0.2", "10.0.0.3"]
CONTROLLER = "10.0.0.254"


def test_partition_rules_drop_both_directions_and_undo_deletes_the_same_rules():
    start, undo = commands.drop_from(["10.0.0.3", "10.0.0.2", "10.0.0.2"])
    assert "iptables -w -N GAUNTLET" in start
    for addr in ("10.0.0.2", "10.0.0.3"):
        assert f"-A GAUNTLET -s {addr} -m comment --comment gauntlet-nemesis -j DROP" in start
        assert f"-A GAUNTLET -d {addr} -m comment --comment gauntlet-nemesis -j DROP" in start
        assert f"-D GAUNTLET -s {addr} -m comment --comment gauntlet-nemesis -j DROP" in undo
    assert start.count("-A GAUNTLET") == 4  # duplicates collapsed
    assert undo.count("-D GAUNTLET") == 4


def test_loss_uses_the_statistic_match_with_a_probability():
    start, undo = commands.loss_from(["10.0.0.2"], 0.25)
    assert "-m statistic --mode random --probability 0.2500" in start
    assert "-D GAUNTLET" in undo
    with pytest.raises(ValueError):
        commands.loss_from(["10.0.0.2"], 1.5)


def test_heal_flushes_only_our_chain():
    assert commands.flush().startswith("iptables -w -F GAUNTLET")


def test_kill_keeps_the_unit_down_until_undone():
    start, undo = commands.kill_unit("patroni")
    assert "systemctl kill --signal=SIGKILL patroni" in start
    assert "systemctl stop patroni" in start  # no Restart= brings it back during the fault
    # a stop that hangs (systemd missed the empty cgroup) is bounded and finished after a daemon-reload
    assert f"timeout {commands.STOP_WAIT_S} systemctl stop patroni" in start
    assert "|| { systemctl daemon-reload;" in start
    assert undo == "systemctl start patroni"


def test_pause_stops_and_continues_the_whole_unit():
    assert commands.pause_unit("redis-server") == (
        "systemctl kill --signal=SIGSTOP redis-server",
        "systemctl kill --signal=SIGCONT redis-server",
    )


def test_unit_names_are_quoted():
    start, _ = commands.kill_unit("x; rm -rf /")
    assert "'x; rm -rf /'" in start


def test_netem_delay_with_jitter_sits_under_our_root_for_the_peers_only():
    start, undo = commands.netem_delay(PEERS, 200, 20)
    assert "netem delay 200ms 20ms distribution normal" in start
    assert "parent 9a17:10 handle 9a10: netem" in start
    for peer in PEERS:
        assert f"match ip dst {peer}/32 flowid 9a17:10" in start
    assert CONTROLLER not in start + undo
    assert "root netem" not in start  # never the whole interface
    assert "tc filter del" in undo and "classid 9a17:10" in undo


def test_nfqueue_fallback_queues_only_peer_traffic_and_bypasses_when_no_listener():
    start, undo = commands.nfqueue_delay(["10.0.0.5"], 200, 0)
    assert (
        "-d 10.0.0.5 -m comment --comment gauntlet-nemesis -j NFQUEUE --queue-num 7 --queue-bypass" in start
    )
    assert "--delay-ms 200" in start and "systemd-run --unit=gauntlet-delay" in start
    assert "systemctl stop gauntlet-delay" in undo
    # The delayer is running before packets are queued to it.
    assert start.index("systemd-run") < start.index("-j NFQUEUE")


def test_bandwidth_is_an_htb_class_for_the_peers_only_and_rejects_nonsense():
    start, undo = commands.shape_bandwidth(PEERS, 512)
    assert "classid 9a17:20 htb rate 512kbit ceil 512kbit" in start
    for peer in PEERS:
        assert f"match ip dst {peer}/32 flowid 9a17:20" in start
    assert "root tbf" not in start and CONTROLLER not in start + undo
    with pytest.raises(ValueError):
        commands.shape_bandwidth(PEERS, 0)
    with pytest.raises(ValueError):
        commands.shape_bandwidth([], 512)


def test_a_peer_given_by_name_is_resolved_on_the_host():
    start, _ = commands.shape_bandwidth(["db1.example"], 512)
    assert "match ip dst $(getent ahostsv4 db1.example" in start


def test_loss_and_partition_name_the_peers_only():
    for start, undo in (commands.loss_from(PEERS, 0.3), commands.drop_from(PEERS)):
        assert CONTROLLER not in start + undo
        assert " -s 10.0.0.2 " in start and " -d 10.0.0.3 " in start


# -- under sh, against stand-ins ------------------------------------------------------------------------------
FAKES = {
    # tc: the root qdisc of eth0 in $FAKE/root, our classes in $FAKE/classes
    "tc": r"""
        case "$*" in
          "qdisc show dev eth0 root") cat "$FAKE/root" ;;
          "qdisc add dev eth0 root "*) echo "qdisc htb 9a17: root refcnt 2" > "$FAKE/root" ;;
          "qdisc del dev eth0 root") echo "qdisc noqueue 0: root refcnt 2" > "$FAKE/root" ;;
          "class add "*) echo "$*" | sed 's/.*classid \([^ ]*\).*/class htb \1/' >> "$FAKE/classes" ;;
          "class del "*) c=$(echo "$*" | sed 's/.*classid \([^ ]*\).*/\1/'); grep -v " $c\$" "$FAKE/classes" > "$FAKE/c" ; mv "$FAKE/c" "$FAKE/classes" ;;
          "class show dev eth0") cat "$FAKE/classes" ;;
        esac
        """,
    "ip": r"""echo "$4 dev eth0 src 10.0.0.1 uid 0" """,
    # iptables: -C finds every rule, -D of a jump finds none (heal's unhooking loop ends)
    "iptables": r"""case "$*" in *"-D INPUT"*|*"-D OUTPUT"*) exit 1 ;; esac""",
    "systemctl": "",
    "systemd-run": "",
}


@pytest.fixture
def host(tmp_path, monkeypatch):
    """A shell 'host': the stand-ins first on PATH, every call logged in $FAKE/log, the state dir in tmp."""
    bin_dir, fake = tmp_path / "bin", tmp_path / "fake"
    bin_dir.mkdir()
    fake.mkdir()
    (fake / "root").write_text("qdisc noqueue 0: root refcnt 2\n")
    (fake / "classes").write_text("")
    for name, body in FAKES.items():
        path = bin_dir / name
        script = f'#!/bin/sh\necho "{name} $*" >> "$FAKE/log"\n{textwrap.dedent(body)}\n'
        path.write_text(script)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "systemd").mkdir()
    monkeypatch.setattr(commands, "STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(commands, "SYSTEMD_DIR", str(tmp_path / "systemd"))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE": str(fake)}

    class Host:
        state = tmp_path / "state"

        def run(self, command: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True, timeout=30)

        def log(self) -> list[str]:
            return (fake / "log").read_text().splitlines() if (fake / "log").exists() else []

        def root(self) -> str:
            return (fake / "root").read_text().strip()

        def set_root(self, line: str) -> None:
            (fake / "root").write_text(line + "\n")

    return Host()


def test_shaping_adds_our_root_classifies_the_peers_and_the_undo_restores_the_kernels_root(host):
    start, undo = commands.shape_bandwidth(PEERS, 512)
    r = host.run(start)
    assert r.returncode == 0, r.stderr
    assert host.root().startswith("qdisc htb 9a17:")
    filters = [line for line in host.log() if line.startswith("tc filter add")]
    assert [f.split("match ip dst ")[1].split()[0] for f in filters] == ["10.0.0.2/32", "10.0.0.3/32"]
    assert host.run(undo).returncode == 0
    assert host.root() == "qdisc noqueue 0: root refcnt 2"
    assert "tc filter del dev eth0 parent 9a17: prio 20" in host.log()


def test_our_root_stays_while_another_shaping_fault_holds_a_class(host):
    delay_start, delay_undo = commands.netem_delay(PEERS, 100)
    bw_start, bw_undo = commands.shape_bandwidth(PEERS, 512)
    assert host.run(delay_start).returncode == 0 and host.run(bw_start).returncode == 0
    assert sum(line.startswith("tc qdisc add dev eth0 root") for line in host.log()) == 1
    assert host.run(delay_undo).returncode == 0
    assert host.root().startswith("qdisc htb 9a17:")  # the bandwidth class is still ours to keep
    assert host.run(bw_undo).returncode == 0
    assert host.root().startswith("qdisc noqueue 0:")


def test_a_root_qdisc_that_is_not_ours_is_refused_in_one_line_and_left_alone(host):
    host.set_root("qdisc fq 8001: root refcnt 2 limit 10000p")
    start, undo = commands.shape_bandwidth(PEERS, 512)
    r = host.run(start)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "gauntlet: eth0 has a root qdisc that is not ours (fq 8001:): shaping would replace it; remove it or "
        "run this fault elsewhere"
    ]
    assert not [line for line in host.log() if line.startswith(("tc qdisc add", "tc class add", "tc filter"))]
    assert host.run(undo).returncode == 0
    assert host.root().startswith("qdisc fq 8001:")  # the undo never deletes a root that is not ours


def test_the_dead_man_timer_is_armed_with_the_bound_and_the_undo_disarms_it_once(host):
    _, undo = commands.drop_from(PEERS)
    r = host.run(commands.arm("partition-ab12", undo, 300))
    assert r.returncode == 0 and commands.NO_TIMER not in r.stdout
    script = host.state / "partition-ab12.sh"
    assert script.is_file() and stat.S_IMODE(script.stat().st_mode) == 0o700
    assert (
        "systemd-run --quiet --collect --unit=gauntlet-heal-partition-ab12 --on-active=300s "
        f"--timer-property=AccuracySec=1s /bin/sh {script}"
    ) in host.log()
    r = host.run(commands.disarm_and_undo("partition-ab12", 300))
    assert r.returncode == 0, r.stderr
    log = host.log()
    assert "systemctl stop gauntlet-heal-partition-ab12.timer" in log
    assert any(line.startswith("iptables -w -D GAUNTLET -s 10.0.0.2") for line in log)
    assert log.index("systemctl stop gauntlet-heal-partition-ab12.timer") < len(log) - 1
    assert not script.exists()
    # a second undo: the fault was no longer held (the timer fired, or gauntlet heal ran): said, and failed
    r = host.run(commands.disarm_and_undo("partition-ab12", 300))
    assert r.returncode == commands.ALREADY_UNDONE
    assert "undone before its end" in r.stderr and "bound 300 s" in r.stderr


def test_without_systemd_no_timer_is_armed_and_the_undo_is_still_kept(host, tmp_path):
    (tmp_path / "systemd").rmdir()
    r = host.run(commands.arm("kill-1", "systemctl start patroni", 300))
    assert commands.NO_TIMER in r.stdout
    assert not [line for line in host.log() if line.startswith("systemd-run")]
    assert (host.state / "kill-1.sh").is_file()
    assert commands.NO_TIMER in host.run(commands.arm("kill-2", "true", 0)).stdout  # bound 0: no timer


def test_heal_host_runs_every_undo_left_and_keeps_the_one_that_failed(host):
    assert host.run(commands.arm("kill-1", "systemctl start patroni", 300)).returncode == 0
    assert host.run(commands.arm("pause-2", "false", 300)).returncode == 0
    host.set_root("qdisc htb 9a17: root refcnt 2")
    r = host.run(commands.heal_host())
    assert r.returncode == 1
    assert "the undo" in r.stderr and "pause-2.sh failed" in r.stderr
    log = host.log()
    assert "systemctl stop gauntlet-heal-*.timer" in log
    assert "systemctl start patroni" in log
    assert "iptables -w -F GAUNTLET" in log and "iptables -w -X GAUNTLET" in log
    assert not (host.state / "kill-1.sh").exists() and (host.state / "pause-2.sh").exists()
    assert host.root().startswith("qdisc noqueue 0:")
