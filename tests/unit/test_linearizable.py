"""The linearizability checker on known-good and known-bad register histories, generated ones, and a bench."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gauntlet.checkers import linearizable
from gauntlet.history import History, Op

S = 1_000_000_000


def hist(*ops):
    """ops: (process, f, value, start_s, end_s | None, outcome[, key]). ``value`` is what a write writes,
    ``(expected, new)`` for a cas, and what a read returned; ``end_s`` None means it never completed."""
    events = []
    for n, (p, f, v, t0, t1, outcome, *k) in enumerate(ops):
        key = k[0] if k else "k"
        invoke_value = None if f == "read" else v
        events.append((t0, n, 0, dict(type="invoke", process=p, f=f, value=invoke_value, key=key)))
        if t1 is not None:
            done_value = v if outcome == "ok" else invoke_value
            events.append((t1, n, 1, dict(type=outcome, process=p, f=f, value=done_value, key=key)))
    events.sort(key=lambda e: (e[0], e[2], e[1]))
    return History.from_ops([Op(index=i, time=int(t * S), **kw) for i, (t, _, _, kw) in enumerate(events)])


def verdict(*ops, **kw):
    return linearizable(hist(*ops), **kw).valid


# -- accepted -------------------------------------------------------------------------------------------------
def test_sequential_writes_and_reads_are_linearizable():
    assert verdict(
        ("a", "read", None, 0, 1, "ok"),
        ("a", "write", 1, 2, 3, "ok"),
        ("b", "read", 1, 4, 5, "ok"),
        ("b", "write", 2, 6, 7, "ok"),
        ("a", "read", 2, 8, 9, "ok"),
    )


def test_reads_overlapping_a_write_may_see_either_value_but_never_go_back():
    assert verdict(
        ("w", "write", 1, 0, 10, "ok"),
        ("a", "read", None, 1, 2, "ok"),
        ("b", "read", 1, 3, 4, "ok"),
        ("a", "read", 1, 5, 6, "ok"),
    )
    # once a reader saw 1 (completed at 2), a later read cannot see the old value again
    assert (
        verdict(
            ("w", "write", 1, 0, 10, "ok"),
            ("a", "read", 1, 1, 2, "ok"),
            ("b", "read", None, 3, 4, "ok"),
        )
        is False
    )


def test_concurrent_writes_may_take_effect_in_either_order():
    assert verdict(
        ("a", "write", 1, 0, 5, "ok"),
        ("b", "write", 2, 1, 6, "ok"),
        ("c", "read", 1, 7, 8, "ok"),
    )
    assert verdict(
        ("a", "write", 1, 0, 5, "ok"),
        ("b", "write", 2, 1, 6, "ok"),
        ("c", "read", 2, 7, 8, "ok"),
    )


def test_info_write_may_take_effect_later_or_never():
    took_effect_late = (
        ("a", "write", 1, 0, 1, "info"),
        ("b", "read", None, 2, 3, "ok"),
        ("b", "read", 1, 4, 5, "ok"),
    )
    never = (
        ("a", "write", 1, 0, None, "info"),  # never completed at all
        ("b", "read", None, 2, 3, "ok"),
        ("b", "read", None, 4, 5, "ok"),
    )
    assert verdict(*took_effect_late)
    assert verdict(*never)


def test_info_write_cannot_take_effect_before_it_was_invoked():
    assert (
        verdict(
            ("b", "read", 1, 0, 1, "ok"),
            ("a", "write", 1, 2, 3, "info"),
        )
        is False
    )


def test_info_write_takes_effect_at_most_once():
    assert (
        verdict(
            ("a", "write", 1, 0, None, "info"),
            ("b", "read", 1, 1, 2, "ok"),
            ("c", "write", 2, 3, 4, "ok"),
            ("b", "read", 1, 5, 6, "ok"),
        )
        is False
    )


def test_failed_operations_did_not_happen():
    assert verdict(("a", "write", 5, 0, 1, "fail"), ("b", "read", None, 2, 3, "ok"))
    assert verdict(("a", "write", 5, 0, 1, "fail"), ("b", "read", 5, 2, 3, "ok")) is False


def test_keys_are_independent_registers():
    assert verdict(
        ("a", "write", 1, 0, 1, "ok", "x"),
        ("a", "write", 2, 2, 3, "ok", "y"),
        ("b", "read", 1, 4, 5, "ok", "x"),
        ("b", "read", 2, 6, 7, "ok", "y"),
    )
    assert verdict(("a", "write", 1, 0, 1, "ok", "x"), ("b", "read", 1, 2, 3, "ok", "y")) is False


def test_delete_is_a_write_of_absent():
    assert verdict(
        ("a", "write", 1, 0, 1, "ok"),
        ("a", "delete", None, 2, 3, "ok"),
        ("b", "read", None, 4, 5, "ok"),
    )


# -- rejected -------------------------------------------------------------------------------------------------
def test_stale_read_is_rejected():
    r = linearizable(
        hist(
            ("a", "write", 1, 0, 1, "ok"),
            ("a", "write", 2, 2, 3, "ok"),
            ("b", "read", 1, 4, 5, "ok"),
        )
    )
    assert r.valid is False
    assert "NOT linearizable" in r.report()


def test_lost_write_is_rejected():
    # an acknowledged write that a later read does not see (the store lost it)
    assert (
        verdict(
            ("a", "write", 1, 0, 1, "ok"),
            ("b", "read", None, 2, 3, "ok"),
        )
        is False
    )
    # ... also when a concurrent later write could have overwritten it, but the read saw the older state
    assert (
        verdict(
            ("a", "write", 1, 0, 1, "ok"),
            ("a", "write", 2, 2, 3, "ok"),
            ("c", "write", 3, 2.5, 10, "ok"),
            ("b", "read", 1, 4, 5, "ok"),
        )
        is False
    )


def test_read_from_the_future_is_rejected():
    assert (
        verdict(
            ("b", "read", 1, 0, 1, "ok"),
            ("a", "write", 1, 2, 3, "ok"),
        )
        is False
    )


def test_read_of_a_value_nobody_wrote_is_rejected():
    assert verdict(("a", "write", 1, 0, 1, "ok"), ("b", "read", 7, 2, 3, "ok")) is False


# -- compare-and-set ------------------------------------------------------------------------------------------
def test_cas_succeeds_only_from_the_expected_value():
    assert verdict(
        ("a", "write", 0, 0, 1, "ok"),
        ("a", "cas", (0, 1), 2, 3, "ok"),
        ("b", "cas", (1, 2), 4, 5, "ok"),
        ("b", "read", 2, 6, 7, "ok"),
    )
    assert verdict(("a", "write", 0, 0, 1, "ok"), ("a", "cas", (5, 1), 2, 3, "ok")) is False


def test_two_concurrent_cas_from_the_same_value_cannot_both_succeed():
    assert (
        verdict(
            ("a", "write", 0, 0, 1, "ok"),
            ("a", "cas", (0, 1), 2, 5, "ok"),
            ("b", "cas", (0, 2), 2, 5, "ok"),
        )
        is False
    )
    # ... but one may fail (409 mismatch is a definite failure: it did not happen)
    assert verdict(
        ("a", "write", 0, 0, 1, "ok"),
        ("a", "cas", (0, 1), 2, 5, "ok"),
        ("b", "cas", (0, 2), 2, 5, "fail"),
        ("b", "read", 1, 6, 7, "ok"),
    )


def test_cas_from_absent_is_create_if_absent():
    assert verdict(("a", "cas", (None, 1), 0, 1, "ok"), ("b", "read", 1, 2, 3, "ok"))
    assert verdict(("a", "cas", (None, 1), 0, 1, "ok"), ("b", "cas", (None, 2), 2, 3, "ok")) is False


def test_info_cas_may_have_taken_effect():
    assert verdict(
        ("a", "write", 0, 0, 1, "ok"),
        ("a", "cas", (0, 1), 2, 3, "info"),
        ("b", "read", 1, 4, 5, "ok"),
    )
    assert verdict(
        ("a", "write", 0, 0, 1, "ok"),
        ("a", "cas", (0, 1), 2, 3, "info"),
        ("b", "read", 0, 4, 5, "ok"),
    )


# -- budget and shrinking -------------------------------------------------------------------------------------
def test_exhausted_budget_is_unknown_never_a_pass():
    h = simulate(random.Random(3), processes=6, ops=400, keys=1, info_rate=0.1)
    r = linearizable(h, max_steps=50)
    assert r.valid is None
    assert "UNKNOWN" in r.report()


def test_result_has_no_truth_value():
    r = linearizable(hist(("a", "write", 1, 0, 1, "ok")))
    with pytest.raises(TypeError):
        bool(r)


def test_violation_is_shrunk_to_the_offending_ops():
    """A long good history, then a stale read: the report shows a handful of ops, not hundreds."""
    rng = random.Random(7)
    good = simulate(rng, processes=4, ops=300, keys=1, info_rate=0.0)
    ops = good.ops
    end = max(o.time for o in ops)
    last_write = max((o for o in ops if o.f == "write" and o.type == "ok"), key=lambda o: o.time)
    stale = next(o.value for o in ops if o.f == "write" and o.type == "ok" and o.value != last_write.value)
    extra = [
        Op(index=len(ops), type="invoke", process="z", f="write", value="fresh", key="k0", time=end + S),
        Op(index=len(ops) + 1, type="ok", process="z", f="write", value="fresh", key="k0", time=end + 2 * S),
        Op(index=len(ops) + 2, type="invoke", process="z", f="read", value=None, key="k0", time=end + 3 * S),
        Op(index=len(ops) + 3, type="ok", process="z", f="read", value=stale, key="k0", time=end + 4 * S),
    ]
    r = linearizable(History.from_ops(ops + extra))
    assert r.valid is False
    (failure,) = r.failures
    assert len(failure.witness) <= 3, failure.report()
    assert failure.culprit is not None and failure.culprit.f == "read" and failure.culprit.value == stale
    text = r.report()
    assert "first result that cannot be explained" in text and repr(stale) in text
    print(text)


# -- generated histories of a real register -------------------------------------------------------------------
def simulate(
    rng: random.Random, processes: int, ops: int, keys: int, info_rate: float, values: int = 0
) -> History:
    """A history of ``processes`` concurrent clients on a real (atomic) register per key.

    Each op takes effect at a random instant inside its interval (its linearization point); results are
    computed by applying the ops in the order of those instants, so the history is linearizable by
    construction. Ops with unknown outcome either took effect or not, and are recorded as ``info``.
    ``values`` > 0 draws written values from a small domain (repeats make the search harder).
    """
    clock = {p: rng.randint(0, 5) * 1000 for p in range(processes)}
    planned = []
    counter = 0
    for n in range(ops):
        p = n % processes
        start = clock[p] + rng.randint(1, 3000)
        end = start + rng.randint(2, 6000)
        clock[p] = end
        point = rng.randint(start + 1, end - 1)
        key = f"k{rng.randrange(keys)}"
        f = rng.choice(["read", "read", "write", "cas"])
        counter += 1
        v = rng.randrange(values) if values else counter
        info = rng.random() < info_rate
        planned.append(dict(p=p, start=start, end=end, point=point, key=key, f=f, v=v, info=info))
    state: dict[str, object] = {}
    for op in sorted(planned, key=lambda o: o["point"]):
        takes_effect = not op["info"] or rng.random() < 0.5
        cur = state.get(op["key"])
        if op["f"] == "read":
            op["result"], op["outcome"] = cur, "ok"
        elif op["f"] == "write":
            if takes_effect:
                state[op["key"]] = op["v"]
            op["outcome"] = "ok"
        else:
            expect = cur if rng.random() < 0.6 else rng.choice([cur, None, counter + 1])
            op["expect"] = expect
            if cur == expect:
                if takes_effect:
                    state[op["key"]] = op["v"]
                op["outcome"] = "ok"
            else:
                op["outcome"] = "fail"
        if op["info"] and op["f"] != "read" and op["outcome"] == "ok":
            op["outcome"] = "info"
        if op["info"] and op["f"] == "read":
            op["outcome"] = "info"
    events = []
    for op in planned:
        if op["f"] == "cas":
            value = [op["expect"], op["v"]]
        elif op["f"] == "write":
            value = op["v"]
        else:
            value = None
        events.append(
            (op["start"], 0, dict(type="invoke", process=str(op["p"]), f=op["f"], value=value, key=op["key"]))
        )
        done = op.get("result") if op["f"] == "read" and op["outcome"] == "ok" else value
        events.append(
            (
                op["end"],
                1,
                dict(type=op["outcome"], process=str(op["p"]), f=op["f"], value=done, key=op["key"]),
            )
        )
    events.sort(key=lambda e: (e[0], e[1]))
    return History.from_ops([Op(index=i, time=t * 1000, **kw) for i, (t, _, kw) in enumerate(events)])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    processes=st.integers(1, 6),
    ops=st.integers(0, 60),
    keys=st.integers(1, 3),
    info_rate=st.sampled_from([0.0, 0.1, 0.3]),
    values=st.sampled_from([0, 2, 3]),
)
def test_histories_of_a_real_register_always_pass(seed, processes, ops, keys, info_rate, values):
    h = simulate(random.Random(seed), processes, ops, keys, info_rate, values)
    r = linearizable(h, time_limit=30)
    assert r.valid is True, r.report()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), processes=st.integers(2, 5), ops=st.integers(6, 40))
def test_corrupting_one_read_of_a_sequential_history_is_caught(seed, processes, ops):
    """Non-overlapping ops (one client at a time): a read changed to a value it could not have seen fails."""
    rng = random.Random(seed)
    h = simulate(rng, 1, ops, 1, 0.0)
    reads = [o for o in h.ops if o.f == "read" and o.type == "ok"]
    if not reads:
        return
    victim = rng.choice(reads)
    victim.value = "never-written"
    r = linearizable(h)
    assert r.valid is False
    assert any("never-written" in k.report() for k in r.failures)


# -- benchmark ------------------------------------------------------------------------------------------------
def test_bench_checker_time_for_2000_ops(bench):
    h = simulate(random.Random(2000), processes=8, ops=2000, keys=4, info_rate=0.03)
    assert len(h.client_ops()) == 4000  # 2,000 invoke/completion pairs
    t0 = time.perf_counter()
    r = linearizable(h)
    seconds = time.perf_counter() - t0
    assert r.valid is True, r.report()
    bench.record("linearizable_check_2000_ops_seconds", seconds, "s", processes=8, keys=4, steps=r.steps)
    print(f"BENCH linearizable_check_2000_ops_seconds={seconds:.3f} s (steps={r.steps})")


# -- cross-check against brute force on small arbitrary histories ---------------------------------------------
def brute_force(h: History) -> bool:
    """Try every subset of optional ops and every order of the ops: the definition, for tiny histories."""
    from itertools import combinations, permutations

    from gauntlet.checkers.linearizable import register_ops

    by_key: dict = {}
    for o in register_ops(h):
        by_key.setdefault(o.key, []).append(o)
    for ops in by_key.values():
        required = [o for o in ops if not o.optional]
        optional = [o for o in ops if o.optional]
        found = False
        for n in range(len(optional) + 1):
            for extra in combinations(optional, n):
                for order in permutations(required + list(extra)):
                    if _valid_order(order):
                        found = True
                        break
                if found:
                    break
            if found:
                break
        if not found:
            return False
    return True


def _valid_order(order) -> bool:
    for i, a in enumerate(order):  # real time: nothing placed before an op that completed before it began
        for b in order[i + 1 :]:
            if b.complete is not None and b.complete < a.invoke:
                return False
    state = None
    for o in order:
        if o.f == "write":
            state = o.value
        elif o.f == "read":
            if state != o.value:
                return False
        else:
            if state != o.value[0]:
                return False
            state = o.value[1]
    return True


small_op = st.tuples(
    st.sampled_from(["read", "write", "cas"]),
    st.sampled_from([None, 1, 2]),
    st.sampled_from([None, 1, 2]),
    st.sampled_from(["ok", "ok", "ok", "info", "fail"]),
    st.integers(1, 4),  # gap before
    st.integers(1, 6),  # duration
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.lists(small_op, min_size=1, max_size=3), min_size=1, max_size=3))
def test_agrees_with_brute_force_on_small_arbitrary_histories(per_process):
    ops = []
    for p, seq in enumerate(per_process):
        t = p * 0.5  # stagger processes so that some ops overlap and some do not
        for f, a, b, outcome, gap, dur in seq:
            t0, t1 = t + gap, t + gap + dur
            t = t1
            value = (a, b) if f == "cas" else (a if f == "read" else (b if b is not None else 1))
            ops.append((f"p{p}", f, value, t0, t1, outcome))
    if sum(1 for o in ops) > 7:
        return
    h = hist(*ops)
    assert linearizable(h).valid is brute_force(h), linearizable(h).report()


# -- many crashed writes pending at once (issue 12, item 3) ----------------------------------------------------
def many_pending_info_writes(n=32, tail=()):
    """``n`` writes of 1..n that all crash (half ``info``, half never completed) while running concurrently,
    then sequential reads that see every other one of them, in a scrambled order (the rest are never seen)."""
    ops = [("z", "write", 0, 0, 1, "ok")]
    for i in range(1, n + 1):
        ops.append((f"w{i}", "write", i, 2 + 0.01 * i, 3 if i % 2 else None, "info"))
    seen = [i for i in range(1, n + 1) if i % 2 == 0]
    random.Random(12).shuffle(seen)
    t = 4
    for v in seen:
        ops.append(("r", "read", v, t, t + 1, "ok"))
        t += 2
    for p, f, v, dt0, dt1, outcome in tail:  # times relative to the end of the reads
        ops.append((p, f, v, t + dt0, t + dt1, outcome))
    return ops, seen


@pytest.mark.parametrize(
    "case",
    ["valid", "value_seen_twice", "stale_after_overwrite"],
)
def test_32_pending_info_writes_are_decided_within_5_s(case, bench):
    tail = {
        "valid": (("r", "read", 0, 0, 1, "fail"),),  # a failed read constrains nothing
        # an info write takes effect at most once: its value cannot come back after another was read
        "value_seen_twice": None,
        # a completed overwrite was read; a later read still sees one of the crashed writes' old values
        "stale_after_overwrite": (("z", "write", 100, 0, 1, "ok"), ("r", "read", 100, 2, 3, "ok")),
    }[case]
    ops, seen = many_pending_info_writes(32, tail or ())
    if case == "value_seen_twice":
        ops.append(("r", "read", seen[0], 1000, 1001, "ok"))
    if case == "stale_after_overwrite":
        ops.append(("r", "read", seen[-1], 1000, 1001, "ok"))
    h = hist(*ops)
    t0 = time.monotonic()
    r = linearizable(h, time_limit=10, shrink_time_limit=5)
    t = time.monotonic() - t0
    bench.record(
        "linearizable_32_pending_info_seconds", round(t, 4), "s", case=case, valid=r.valid, steps=r.steps
    )
    assert r.valid is (case == "valid"), r.report()
    assert t < 5, f"{t:.3f} s"


def test_crashed_writes_nobody_saw_are_dropped():
    """Reduction (a): 32 crashed writes whose values nothing observed cannot explain or hide anything."""
    ops = [("z", "write", 0, 0, 1, "ok")]
    ops += [(f"w{i}", "write", 100 + i, 2 + 0.01 * i, None, "info") for i in range(32)]
    ops += [("r", "read", 0, 4 + 2 * i, 5 + 2 * i, "ok") for i in range(16)]
    r = linearizable(hist(*ops), time_limit=10)
    assert r.valid is True and r.steps < 100, r.report()
    # ... and dropping them does not hide a violation: an acknowledged write lost
    ops.append(("z", "write", 1, 40, 41, "ok"))
    ops.append(("r", "read", 0, 42, 43, "ok"))
    assert linearizable(hist(*ops), time_limit=10, shrink_time_limit=5).valid is False


def test_crashed_write_only_a_cas_observed_is_kept():
    """A cas that succeeded only because a crashed write took effect: valid (wrong if 'observed' meant reads)."""
    assert verdict(
        ("z", "write", 0, 0, 1, "ok"),
        ("a", "write", 5, 2, None, "info"),  # no read ever returns 5
        ("b", "cas", (5, 6), 4, 5, "ok"),
        ("b", "read", 6, 6, 7, "ok"),
    )
    # ... and the same cas with no crashed write of 5 is a violation
    assert verdict(("z", "write", 0, 0, 1, "ok"), ("b", "cas", (5, 6), 4, 5, "ok")) is False


def test_crashed_write_and_crashed_cas_chain():
    """Both crashed ops must have taken effect, in order, for the read: valid."""
    assert verdict(
        ("z", "write", 0, 0, 1, "ok"),
        ("a", "write", 1, 2, None, "info"),
        ("b", "cas", (1, 2), 3, 4, "info"),
        ("c", "read", 2, 5, 6, "ok"),
    )


def test_crashed_write_invoked_after_its_reader_began():
    """Reduction (b) pairs a crashed write with the read that saw it even when the read was invoked first."""
    assert verdict(
        ("z", "write", 0, 0, 1, "ok"),
        ("b", "read", 1, 2, 10, "ok"),
        ("a", "write", 1, 5, None, "info"),
    )
    # ... but never with a read that completed before the write began
    assert (
        verdict(
            ("z", "write", 0, 0, 1, "ok"),
            ("b", "read", 1, 2, 3, "ok"),
            ("a", "write", 1, 5, None, "info"),
        )
        is False
    )


def test_crashed_writes_of_equal_values_each_take_effect_at_most_once():
    """Equal-valued crashed writes are tried once per value at a time (symmetry), never merged into one."""
    two = (
        ("z", "write", 0, 0, 1, "ok"),
        ("a", "write", 1, 2, None, "info"),
        ("b", "write", 1, 2.5, None, "info"),
        ("r", "read", 1, 3, 4, "ok"),
        ("z", "write", 2, 5, 6, "ok"),
        ("r", "read", 1, 7, 8, "ok"),
    )
    assert verdict(*two)
    assert verdict(*two, ("z", "write", 2, 9, 10, "ok"), ("r", "read", 1, 11, 12, "ok")) is False
    # the second crashed write begins only after the first read: still two effects available
    late = (
        ("z", "write", 0, 0, 1, "ok"),
        ("a", "write", 1, 2, None, "info"),
        ("r", "read", 1, 3, 4, "ok"),
        ("z", "write", 2, 5, 6, "ok"),
        ("b", "write", 1, 6.5, None, "info"),
        ("r", "read", 1, 7, 8, "ok"),
    )
    assert verdict(*late)
    # ... but not if the read of the second came before it was invoked
    assert (
        verdict(
            ("z", "write", 0, 0, 1, "ok"),
            ("a", "write", 1, 2, None, "info"),
            ("r", "read", 1, 3, 4, "ok"),
            ("z", "write", 2, 5, 6, "ok"),
            ("r", "read", 1, 7, 8, "ok"),
            ("b", "write", 1, 9, None, "info"),
        )
        is False
    )


crash_op = st.tuples(
    st.sampled_from(["read", "read", "write", "write", "cas"]),
    st.sampled_from([None, 1, 2]),
    st.sampled_from([None, 1, 2]),
    st.sampled_from(["ok", "info", "info", "fail"]),
    st.integers(1, 4),  # gap before
    st.integers(1, 6),  # duration
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(crash_op, min_size=1, max_size=3), min_size=1, max_size=3))
def test_agrees_with_brute_force_with_many_crashed_ops(per_process):
    """Mostly crashed writes and cas: the pairing and symmetry reductions agree with the definition."""
    ops = []
    for p, seq in enumerate(per_process):
        t = p * 0.5
        for n, (f, a, b, outcome, gap, dur) in enumerate(seq):
            t0, t1 = t + gap, t + gap + dur
            t = t1
            if f == "read":
                outcome = "ok" if outcome == "info" else outcome
            value = (a, b) if f == "cas" else (a if f == "read" else (b if b is not None else 1))
            never = outcome == "info" and n == len(seq) - 1 and gap % 2  # a process's last op may hang
            ops.append((f"p{p}", f, value, t0, None if never else t1, outcome))
    if len(ops) > 8:
        return
    h = hist(*ops)
    assert linearizable(h).valid is brute_force(h), linearizable(h).report()
