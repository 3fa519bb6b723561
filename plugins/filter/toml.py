"""Filter ``gauntlet.cluster.to_toml``: render a dict as a TOML document (Ansible has no TOML writer).

Scalars and lists of scalars become ``key = value`` lines, nested dicts become ``[table]`` sections, lists
of dicts become ``[[array.of.tables]]``; ``None`` values are left out (TOML has no null). Keys are written
in the dict's order, plain values before tables as TOML requires. The output parses with ``tomllib`` back
into the same data (minus the ``None``s); unit-tested in tests/unit/test_toml_filter.py.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")  # used with fullmatch: "$" would accept a trailing newline


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _string(s: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters (DEL included) escaped."""
    out = []
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            raise TypeError(f"to_toml: {s!r} holds a lone surrogate, which TOML (UTF-8) cannot hold")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(k: Any) -> str:
    s = str(k)
    return s if _BARE_KEY.fullmatch(s) else _string(s)


def _is_table(v: Any) -> bool:
    return isinstance(v, Mapping)


def _is_table_array(v: Any) -> bool:
    return (
        isinstance(v, Sequence)
        and not isinstance(v, str | bytes)
        and len(v) > 0
        and all(isinstance(x, Mapping) for x in v)
    )


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(float(v))
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, str):
        return _string(str(v))
    if isinstance(v, Mapping):
        items = ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items() if x is not None)
        return "{ " + items + " }" if items else "{}"
    if isinstance(v, Sequence) and not isinstance(v, bytes):
        return "[" + ", ".join(_value(x) for x in v if x is not None) + "]"
    raise TypeError(f"to_toml: cannot write a {type(v).__name__} ({v!r}) as TOML")


def _table(data: Mapping[str, Any], path: list[str], out: list[str]) -> None:
    plain = [(k, v) for k, v in data.items() if v is not None and not _is_table(v) and not _is_table_array(v)]
    for k, v in plain:
        out.append(f"{_key(k)} = {_value(v)}")
    for k, v in data.items():
        if _is_table(v):
            sub = [*path, _key(k)]
            out.append("")
            out.append(f"[{'.'.join(sub)}]")
            _table(v, sub, out)
        elif _is_table_array(v):
            sub = [*path, _key(k)]
            for item in v:
                out.append("")
                out.append(f"[[{'.'.join(sub)}]]")
                _table(item, sub, out)


def to_toml(data: Mapping[str, Any]) -> str:
    """Render ``data`` (a dict) as a TOML document ending with a newline."""
    if not isinstance(data, Mapping):
        raise TypeError(f"to_toml needs a dict, not a {type(data).__name__}")
    out: list[str] = []
    _table(data, [], out)
    return "\n".join(out).lstrip("\n") + "\n"


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"to_toml": to_toml}
