"""The replicated-stream checker on hand-made histories (each promise held and broken) and on histories of a
correct broker model: any interleaving of it is valid, and losing one acknowledged message is not."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gauntlet.checkers import acknowledged_delivered, duplicates, no_phantoms, one_total_order, queue
from gauntlet.history import History, Op

S = 1_000_000_000


class Stream:
    """A hand-made history, one op after another (times 1 s apart): publishes, fetches, replica reads."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def _add(self, type: str, process: str, f: str, value: Any = None, key: Any = None) -> None:
        self.ops.append(
            Op(
                index=len(self.ops),
                type=type,
                process=process,
                f=f,
                value=value,
                key=key,
                time=len(self.ops) * S,
            )
        )

    def publish(self, msg: Any, outcome: str = "ok", seq: int | None = None, process: str = "p1") -> Stream:
        self._add("invoke", process, "publish", msg)
        self._add(outcome, process, "publish", {"seq": seq, "stream": "s"} if seq is not None else msg)
        return self

    def consume(
        self, items: list[Any], process: str = "c1", outcome: str = "ok", durable: Any = None
    ) -> Stream:
        self._add("invoke", process, "consume", 10, durable)
        self._add(outcome, process, "consume", items if outcome == "ok" else 10, durable)
        return self

    def read_log(self, replica: str, log: list[tuple[int, Any]]) -> Stream:
        self._add("invoke", "final", "read_log", replica)
        self._add("ok", "final", "read_log", [list(e) for e in log])
        return self

    def fault(self, name: str, phase: str) -> Stream:
        self._add("info", "nemesis", f"{name}:{phase}")
        return self

    def history(self) -> History:
        return History.from_ops(self.ops)


LOG = [(1, "m1"), (2, "m2"), (3, "m3")]


def healthy() -> Stream:
    s = Stream().publish("m1", seq=1).publish("m2", seq=2).publish("m3", seq=3)
    s.consume([[1, "m1"], [2, "m2"]]).consume([[3, "m3"]])
    return s.read_log("n1", LOG).read_log("n2", LOG).read_log("n3", LOG[:2])  # n3 lags: a prefix


def test_a_correct_run_is_valid_and_counts_what_it_judged():
    v = queue(healthy().history())
    assert v, v
    assert [p.check for p in v.parts] == [
        "acknowledged_delivered",
        "no_phantoms",
        "one_total_order",
        "duplicates",
    ]
    assert v.figures["acknowledged"] == 3 and v.figures["replicas"] == 3 and v.figures["deliveries"] == 3
    assert v.evidence["lost"] == [] and v.evidence["log_lengths"] == {"n1": 3, "n2": 3, "n3": 2}


def test_an_acknowledged_message_nobody_read_is_lost_and_named_with_its_fault():
    s = Stream().publish("m1", seq=1).fault("kill", "start").publish("m2", seq=2).fault("kill", "stop")
    s.publish("m3", seq=3).fault("partition", "start").fault("partition", "stop")
    h = s.consume([[1, "m1"]]).read_log("n1", [(1, "m1")]).read_log("n2", [(1, "m1")]).history()
    v = acknowledged_delivered(h)
    assert v.valid is False and not v
    lost = v.evidence["lost"]
    assert [e["message"] for e in lost] == ["m2", "m3"] and lost[0]["seq"] == 2
    assert lost[0]["fault"]["fault"] == "kill" and lost[0]["fault"]["relation"] == "during"
    assert lost[1]["fault"]["fault"] == "partition" and lost[1]["fault"]["relation"] == "after"
    assert v.evidence["lost_by_fault"] == {"during kill": 1, "after partition": 1}
    assert "2 of 3 acknowledged messages never read" in v.explanation and "'m2'" in v.explanation
    assert queue(h).valid is False
    # read by a consumer only (not in any log) is read: not lost
    assert (
        acknowledged_delivered(Stream().publish("m1").consume(["m1"]).read_log("n1", []).history()).valid
        is True
    )


def test_a_lost_message_without_faults_in_the_history_names_none():
    v = acknowledged_delivered(Stream().publish("m1").read_log("n1", []).history())
    assert v.valid is False and "fault" not in v.evidence["lost"][0] and "lost_by_fault" not in v.evidence


def test_a_message_read_that_nobody_published_is_a_phantom():
    h = healthy().consume([[4, "ghost"]]).history()
    v = no_phantoms(h)
    assert v.valid is False and v.evidence["phantoms"] == [{"message": "ghost", "read": "consume op 17 (c1)"}]
    assert queue(h).valid is False
    in_log = no_phantoms(Stream().publish("m1").read_log("n1", [(1, "m1"), (2, "x")]).history())
    assert in_log.valid is False and in_log.evidence["phantoms"][0]["message"] == "x"


def test_a_message_read_whose_every_publish_failed_is_invalid():
    s = Stream().publish("m1", seq=1).publish("m2", outcome="fail")
    v = no_phantoms(s.read_log("n1", [(1, "m1"), (2, "m2")]).history())
    assert v.valid is False and v.evidence["failed_publish_read"] == [
        {"message": "m2", "read": "replica n1 seq 2"}
    ]
    assert v.evidence["phantoms"] == []
    # a retry whose outcome is unknown may have published it
    retried = Stream().publish("m1", seq=1).publish("m2", outcome="fail").publish("m2", outcome="info")
    assert no_phantoms(retried.read_log("n1", [(1, "m1"), (2, "m2")]).history()).valid is True


@pytest.mark.parametrize("read", [True, False], ids=["read", "absent"])
def test_an_unknown_publish_may_or_may_not_be_there(read):
    s = Stream().publish("m1", seq=1).publish("m2", outcome="info")
    log = [(1, "m1"), (2, "m2")] if read else [(1, "m1")]
    v = queue(s.read_log("n1", log).read_log("n2", log).history())
    assert v, v
    assert v.figures["recovered"] == (1 if read else 0)


def test_replicas_holding_different_messages_at_one_seq_name_the_seq():
    s = Stream().publish("a", seq=1).publish("b", seq=2).publish("c")
    h = s.read_log("n1", [(1, "a"), (2, "b")]).read_log("n2", [(1, "a"), (2, "c")]).history()
    v = one_total_order(h)
    assert v.valid is False
    first = v.evidence["first_divergence"]
    assert first["seq"] == 2 and first["kind"] == "disagree"
    assert first["held"] == {"b": ["replica n1", "publish op 3 (p1)"], "c": ["replica n2"]}
    assert "first at seq 2" in v.explanation
    assert queue(h).valid is False


def test_a_replica_with_a_hole_another_replica_fills_is_not_a_prefix():
    s = Stream().publish("a").publish("b").publish("c")
    h = s.read_log("n1", [(1, "a"), (2, "b"), (3, "c")]).read_log("n2", [(1, "a"), (3, "c")]).history()
    v = one_total_order(h)
    assert v.valid is False and v.evidence["first_divergence"]["kind"] == "not_a_prefix"
    assert v.evidence["first_divergence"]["seq"] == 2 and v.evidence["first_divergence"]["missing_from"] == [
        "n2"
    ]


def test_an_acknowledged_seq_holding_another_message_breaks_the_order():
    s = Stream().publish("a", seq=1).publish("b", seq=2)
    h = s.consume(["a", "b"]).read_log("n1", [(1, "a"), (2, "x"), (3, "b")]).history()
    v = one_total_order(h)
    assert v.valid is False and v.evidence["first_divergence"]["held"]["b"] == ["publish op 3 (p1)"]


def test_a_log_listed_out_of_seq_order_is_reordered():
    h = Stream().publish("a").publish("b").read_log("n1", [(2, "b"), (1, "a")]).history()
    v = one_total_order(h)
    assert v.valid is False and v.evidence["reordered"][0]["kind"] == "log_out_of_order"


def test_a_consumer_reading_out_of_seq_order_is_invalid():
    s = Stream().publish("m1", seq=1).publish("m2", seq=2).publish("m3", seq=3)
    h = s.consume([[1, "m1"], [3, "m3"]]).consume([[2, "m2"]]).read_log("n1", LOG).history()
    v = one_total_order(h)
    assert v.valid is False
    (finding,) = v.evidence["reordered"]
    assert finding["kind"] == "consumer_out_of_order" and finding["seq"] == 2 and finding["after"] == 3
    # inside one fetch too, with bare messages placed by the log
    batch = Stream().publish("m1").publish("m2").consume(["m2", "m1"]).read_log("n1", [(1, "m1"), (2, "m2")])
    assert one_total_order(batch.history()).valid is False
    # another consumer's fetch completing first is no reorder: only one that completed before this one began
    a = Stream().publish("m1").publish("m2")
    a._add("invoke", "c1", "consume", 10)
    a._add("invoke", "c2", "consume", 10)
    a._add("ok", "c2", "consume", [[2, "m2"]])
    a._add("ok", "c1", "consume", [[1, "m1"]])
    assert one_total_order(a.read_log("n1", [(1, "m1"), (2, "m2")]).history()).valid is True


def test_a_lower_first_delivery_after_a_fetch_lost_in_flight_is_a_possible_redelivery():
    s = Stream().publish("m1", seq=1).publish("m2", seq=2)
    s.consume([], outcome="info").consume([[2, "m2"]]).consume(
        [[1, "m1"]]
    )  # m1 may have gone to the lost fetch
    v = one_total_order(s.read_log("n1", [(1, "m1"), (2, "m2")]).history())
    assert v.valid is True and v.figures["maybe_redelivered"] == 1


def test_duplicates_are_counted_valid_by_default_and_invalid_with_dedup():
    s = Stream().publish("m1", seq=1).publish("m2", outcome="info").publish("m2", seq=3)
    s.consume([[1, "m1"], [2, "m2"]]).consume([[1, "m1"]])  # m1 redelivered: at-least-once
    h = s.read_log("n1", [(1, "m1"), (2, "m2"), (3, "m2")]).history()
    v = duplicates(h)
    assert v.valid is True and v.evidence["log_duplicates"] == {"m2": [2, 3]}
    assert v.evidence["redelivered"] == {"None": {"m1": 2}} and v.figures["redelivered"] == 1
    assert queue(h), queue(h)
    with_dedup = duplicates(h, dedup=True)
    assert with_dedup.valid is False and "m2" in with_dedup.explanation
    assert queue(h, dedup=True).valid is False
    # dedup on, only redeliveries: still valid
    assert duplicates(healthy().consume([[1, "m1"]]).history(), dedup=True).valid is True


def test_nothing_acknowledged_or_no_final_read_is_unknown():
    assert queue(History()).valid is None and not queue(History())
    unread = Stream().publish("m1", seq=1).consume([[1, "m1"]]).history()
    assert queue(unread).valid is None and not queue(unread)
    assert acknowledged_delivered(unread).valid is None
    unacked = Stream().publish("m1", outcome="info").read_log("n1", [(1, "m1")]).history()
    assert queue(unacked).valid is None


def test_a_log_item_without_a_seq_is_a_convention_error():
    h = Stream().publish("m1")
    h._add("invoke", "final", "read_log", "n1")
    h._add("ok", "final", "read_log", ["m1"])
    with pytest.raises(ValueError, match="has no sequence"):
        queue(h.history())


# -- a correct broker model ------------------------------------------------------------------------------------
REPLICAS = ("n1", "n2", "n3")
PROCESSES = ("p1", "p2", "c1", "c2")


def model_history(schedule: list[tuple[int, int]], replica_cut: list[int]) -> History:
    """Interleave publishes and fetches of a correct broker: an append-only log, a durable that delivers in
    seq order and redelivers what a fetch lost in flight or whose acknowledgement was lost; each replica's
    final log a prefix, the first one whole. ``schedule`` picks, step by step, which process acts and how its
    pending op goes."""
    h = History()
    t = iter(range(1, 10_000))
    log: list[str] = []
    pointer = 0  # the durable's next seq to deliver (0-based)
    redeliver: list[int] = []
    pending: dict[str, tuple[Op, bool, Any]] = {}  # process → (invoke, applied?, result)
    sent = 0
    for pick, arg in schedule:
        process = PROCESSES[pick % len(PROCESSES)]
        if process not in pending:
            if process.startswith("p"):
                sent += 1
                pending[process] = (
                    h._append(type="invoke", process=process, f="publish", value=f"m{sent}", time=next(t)),
                    False,
                    None,
                )
            else:
                pending[process] = (
                    h._append(type="invoke", process=process, f="consume", value=arg % 3 + 1, time=next(t)),
                    False,
                    None,
                )
            continue
        inv, applied, result = pending[process]
        if not applied and arg % 3 != 0:  # the broker acts on it
            if inv.f == "publish":
                log.append(str(inv.value))
                result = {"seq": len(log)}
            else:
                batch = redeliver[: inv.value]
                del redeliver[: len(batch)]
                while len(batch) < inv.value and pointer < len(log):
                    batch.append(pointer)
                    pointer += 1
                result = [[i + 1, log[i]] for i in batch]
            pending[process] = (inv, True, result)
            continue
        # the client hears back: ok if applied; fail only if not; info either way
        if applied and arg % 2 == 0:
            h._append(type="ok", process=process, f=inv.f, value=result, time=next(t))
            if inv.f == "consume" and arg % 4 == 2:
                redeliver.extend(s - 1 for s, _ in result)  # its acknowledgement was lost: comes again
        elif not applied and arg % 2 == 0:
            h._append(type="fail", process=process, f=inv.f, value=inv.value, time=next(t))
        else:
            h._append(type="info", process=process, f=inv.f, value=inv.value, time=next(t))
            if inv.f == "consume" and applied:
                redeliver.extend(s - 1 for s, _ in result)  # delivered, never acked: comes again
        del pending[process]
    # a last acknowledged publish, so a run always has something to lose
    h._append(type="invoke", process="p9", f="publish", value="last", time=next(t))
    log.append("last")
    h._append(type="ok", process="p9", f="publish", value={"seq": len(log)}, time=next(t))
    entries = [[i + 1, m] for i, m in enumerate(log)]
    for n, replica in enumerate(REPLICAS):
        cut = len(entries) if n == 0 else min(replica_cut[n % len(replica_cut)], len(entries))
        h._append(type="invoke", process="final", f="read_log", value=replica, time=next(t))
        h._append(type="ok", process="final", f="read_log", value=entries[:cut], time=next(t))
    return h


def without(h: History, message: str) -> History:
    """``h`` with ``message`` taken out of every delivery and every replica's log."""
    ops = []
    for o in h.ops:
        if o.type == "ok" and o.f in ("consume", "read_log") and isinstance(o.value, list):
            o = Op(**{**o.__dict__, "value": [e for e in o.value if e[1] != message]})
        ops.append(o)
    return History.from_ops(ops)


schedules = st.lists(st.tuples(st.integers(0, 7), st.integers(0, 11)), min_size=20, max_size=80)
cuts = st.lists(st.integers(0, 12), min_size=1, max_size=3)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules, cuts)
def test_any_interleaving_of_a_correct_broker_is_valid(schedule, cut):
    v = queue(model_history(schedule, cut))
    assert v, v


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules, cuts, st.integers(0, 1000))
def test_dropping_one_acknowledged_message_from_every_read_is_invalid(schedule, cut, which):
    h = model_history(schedule, cut)
    acked = [
        inv.value for inv, done in h.pairs() if inv.f == "publish" and done is not None and done.type == "ok"
    ]
    gone = acked[which % len(acked)]
    v = queue(without(h, gone))
    assert v.valid is False, v
    assert [e["message"] for e in v.evidence["lost"]] == [gone]
    # a seq no replica holds is a loss, not a disagreement between replicas
    assert [p.check for p in v.parts if p.valid is False] == ["acknowledged_delivered"], v
