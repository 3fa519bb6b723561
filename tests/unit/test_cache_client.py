"""The cache client's value format (gauntlet.clients.cache) and the Sentinel view it follows."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gauntlet.clients.cache import CorruptValue, decode, encode, payload
from gauntlet.clients.redis import MasterView, freshest

keys = st.text(alphabet=st.characters(codec="ascii", exclude_characters="|"), min_size=1, max_size=30)


@given(key=keys, version=st.integers(1, 10**9), size=st.integers(1, 3000))
def test_values_round_trip(key: str, version: int, size: int) -> None:
    assert decode(key, encode(key, version, "v", size)) == (version, "v")
    assert decode(key, encode(key, version, "t", size)) == (version, "t")
    assert len(payload(key, version, size)) == size


def test_wrong_data_is_detected() -> None:
    good = encode("a", 3, "v", 64)
    with pytest.raises(CorruptValue, match="value of 'b'"):
        decode("a", encode("b", 3, "v", 64))
    with pytest.raises(CorruptValue, match="payload"):
        decode("a", good.replace("|3|", "|3|").rsplit("|", 1)[0] + "|" + payload("a", 4, 64))
    with pytest.raises(CorruptValue, match="payload"):
        decode("a", "4" + good[1:])  # version changed, payload of version 3
    with pytest.raises(CorruptValue, match="unparsable"):
        decode("a", "garbage")


def _view(sentinel: str, addr: str, epoch: int, flags: str = "master") -> MasterView:
    return MasterView(sentinel, addr, 6379, epoch, frozenset(flags.split(",")), 2, 2)


def test_master_view_usable_flags() -> None:
    assert _view("s1", "10.0.0.1", 1).usable
    assert not _view("s1", "10.0.0.1", 1, "master,s_down").usable
    assert not _view("s1", "10.0.0.1", 1, "master,s_down,o_down").usable
    # The freshest view wins: a Sentinel cut off from the others still names the old master, older epoch.
    views = [_view("s1", "10.0.0.1", 1), _view("s2", "10.0.0.2", 2), _view("s3", "10.0.0.2", 2)]
    assert freshest(views).address == "10.0.0.2"
    assert freshest([*views, _view("s4", "10.0.0.3", 3, "master,s_down")]).address == "10.0.0.2"
    assert freshest([_view("s1", "10.0.0.1", 1, "master,o_down")]) is None
