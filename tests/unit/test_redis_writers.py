"""Redis errors on the client protocol and the recorded writers (gauntlet.clients.redis.writers), against
fake clients: a refusal is ``fail``, a lost connection ``info``, an unconfirmed ``WAIT`` ``info``."""

from __future__ import annotations

from typing import Any

import redis

from gauntlet.bench import wait_for
from gauntlet.clients.redis import redis_error
from gauntlet.clients.redis.writers import ClusterWriters, SentinelWriters
from gauntlet.history import History

REFUSED = (redis.ReadOnlyError, redis.exceptions.NoPermissionError)


def test_redis_error_refusal_is_fail_lost_connection_info() -> None:
    assert redis_error(redis.ReadOnlyError("READONLY"), REFUSED).definite
    assert not redis_error(redis.ConnectionError("reset"), REFUSED).definite
    assert not redis_error(redis.TimeoutError("timeout"), REFUSED).definite
    assert not redis_error(redis.ResponseError("ERR other"), REFUSED).definite
    # BusyLoadingError is a ConnectionError: never definite, even if listed as refused
    assert not redis_error(redis.BusyLoadingError("LOADING"), (redis.BusyLoadingError,)).definite


class _Pipe:
    def __init__(self, outcome: str) -> None:
        self.outcome, self.n = outcome, 0

    def set(self, key: str, value: str) -> None:
        self.n += 1

    def execute_command(self, *args: Any) -> None:
        self.n += 1

    def execute(self) -> list[Any]:
        if self.outcome == "readonly":
            raise redis.ReadOnlyError("READONLY You can't write against a read only replica.")
        if self.outcome == "lost":
            raise redis.ConnectionError("Connection reset by peer")
        return [True, 0 if self.outcome == "unconfirmed" else 1][: self.n]


class _Primary:
    """A PrimaryClient whose writes end by the process's scripted outcome."""

    def __init__(self, outcomes: list[str]) -> None:
        self.outcomes, self.closed = outcomes, False

    def client(self) -> object:
        if self.outcomes[0] == "no-master":
            raise redis.ConnectionError("no Sentinel names a usable master")
        return object()

    def call(self, fn: Any) -> Any:
        class _Conn:
            def pipeline(_, transaction: bool = False) -> _Pipe:
                return _Pipe(self.outcomes[0])

        return fn(_Conn())

    def close(self) -> None:
        self.closed = True


def test_sentinel_writers_classify_each_outcome() -> None:
    scripts = [["ok"], ["readonly"], ["lost"], ["no-master"]]
    made: list[_Primary] = []

    def make() -> Any:
        made.append(_Primary(scripts[len(made)]))
        return made[-1]

    h = History()
    with SentinelWriters(make, h, plain=4, waiting=0) as w:
        wait_for(lambda: len(h.ops) > 60, 10, 0.01, "writes")
    by_outcome: dict[str, set[str]] = {}
    owner = {id(p): s[0] for p, s in zip(made, scripts, strict=True)}
    process_outcome = {p: owner[id(c)] for p, c in w._by_process.items()}
    for o in h.client_ops():
        if o.type != "invoke":
            by_outcome.setdefault(process_outcome[o.process], set()).add(o.type)
    assert by_outcome["ok"] == {"ok"}
    assert by_outcome["readonly"] == {"fail"} and by_outcome["no-master"] == {"fail"}
    assert by_outcome["lost"] == {"info"}
    assert all(p.closed for p in made), "a writer's client was not closed when it stopped"


def test_sentinel_waiting_writer_unconfirmed_is_info_confirmed_ok() -> None:
    for outcome, kind in (("unconfirmed", "info"), ("ok", "ok")):
        h = History()
        with SentinelWriters(lambda o=outcome: _Primary([o]), h, plain=0, waiting=1):
            wait_for(lambda h=h: len(h.ops) > 10, 10, 0.01, "writes")
        assert {(o.f, o.type) for o in h.client_ops() if o.type != "invoke"} == {("write_wait", kind)}


class _Cluster:
    def __init__(self) -> None:
        self.made = 0

    def client(self, **kw: Any) -> Any:
        self.made += 1
        made = self.made

        class _C:
            def set(_, key: str, value: str) -> None:
                if made == 1:
                    raise redis.ConnectionError("reset")  # the first client breaks once

            def close(_) -> None:
                pass

        return _C()


def test_cluster_writers_replace_a_client_after_an_unknown_outcome() -> None:
    h = History()
    rc = _Cluster()
    with ClusterWriters(rc, h, n=1) as w:  # type: ignore[arg-type]
        wait_for(lambda: len(w.acked()) >= 5, 10, 0.01, "acknowledged writes")
    done = [o.type for o in h.client_ops() if o.type != "invoke"]
    assert done[0] == "info" and set(done[1:]) == {"ok"} and rc.made == 2
