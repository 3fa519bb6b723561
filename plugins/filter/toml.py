"""Filter ``gauntlet.cluster.to_toml``: render a dict as a TOML document (Ansible has no TOML writer).

The document is written by tomli-w (a pinned dependency of the harness, see pyproject.toml): nested dicts
become ``[table]`` sections, lists of dicts ``[[array.of.tables]]`` (or an inline array when short), other
values ``key = value`` lines, plain values before tables as TOML requires. This filter only prepares the data
for it: ``None`` values are left out everywhere (TOML has no null), keys become strings, and a string holding
a lone surrogate (which UTF-8, so TOML, cannot hold) is refused. The output parses with ``tomllib`` back into
the same data (minus the ``None``s); unit-tested in tests/unit/test_toml_filter.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import tomli_w


def _prepare(v: Any) -> Any:
    """``v`` as plain dicts, lists and scalars for tomli-w: ``None``s dropped, keys made strings."""
    if isinstance(v, Mapping):
        return {str(k): _prepare(x) for k, x in v.items() if x is not None}
    if isinstance(v, str):
        if any(0xD800 <= ord(ch) <= 0xDFFF for ch in v):
            raise TypeError(f"to_toml: {v!r} holds a lone surrogate, which TOML (UTF-8) cannot hold")
        return str(v)
    if isinstance(v, Sequence) and not isinstance(v, bytes | bytearray):
        return [_prepare(x) for x in v if x is not None]
    return v  # tomli-w writes bool, int, float, date/time and Decimal; it raises TypeError on anything else


def to_toml(data: Mapping[str, Any]) -> str:
    """Render ``data`` (a dict) as a TOML document ending with a newline."""
    if not isinstance(data, Mapping):
        raise TypeError(f"to_toml needs a dict, not a {type(data).__name__}")
    text = tomli_w.dumps(_prepare(data))
    return text if text.endswith("\n") else text + "\n"


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"to_toml": to_toml}
