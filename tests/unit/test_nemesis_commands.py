"""Fault command construction: what each fault runs on a host, and how it is undone."""

import pytest

from gauntlet.nemesis import commands


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


def test_netem_delay_with_jitter():
    start, undo = commands.netem_delay(200, 20)
    assert "netem delay 200ms 20ms distribution normal" in start
    assert "qdisc del" in undo


def test_nfqueue_fallback_queues_only_peer_traffic_and_bypasses_when_no_listener():
    start, undo = commands.nfqueue_delay(["10.0.0.5"], 200, 0)
    assert (
        "-d 10.0.0.5 -m comment --comment gauntlet-nemesis -j NFQUEUE --queue-num 7 --queue-bypass" in start
    )
    assert "--delay-ms 200" in start and "systemd-run --unit=gauntlet-delay" in start
    assert "systemctl stop gauntlet-delay" in undo
    # The delayer is running before packets are queued to it.
    assert start.index("systemd-run") < start.index("-j NFQUEUE")


def test_bandwidth_uses_tbf_and_rejects_nonsense():
    start, undo = commands.tbf_bandwidth(512)
    assert "tbf rate 512kbit" in start and "qdisc del" in undo
    with pytest.raises(ValueError):
        commands.tbf_bandwidth(0)
