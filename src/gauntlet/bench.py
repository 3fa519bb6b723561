"""Benchmark lines: measured figures reported next to test results, never asserted against.

Each figure is printed as ``BENCH <name>=<value> <unit>`` at the end of the pytest run and appended to
``<report dir>/bench.jsonl`` so that the report and later runs can read it.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    """One measured value."""

    name: str
    value: float
    unit: str
    context: dict[str, Any]

    def line(self) -> str:
        ctx = " ".join(f"{k}={v}" for k, v in sorted(self.context.items()))
        value = (
            f"{self.value:.3f}".rstrip("0").rstrip(".") if isinstance(self.value, float) else str(self.value)
        )
        return f"BENCH {self.name}={value} {self.unit}" + (f" ({ctx})" if ctx else "")


class Bench:
    """Collects figures of a run; thread-safe."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else None
        self.figures: list[Figure] = []
        self._lock = threading.Lock()

    def record(self, name: str, value: float, unit: str = "s", **context: Any) -> Figure:
        """Record one figure (``unit`` is free text: s, ms, ops/s, rows/s, count)."""
        fig = Figure(name, float(value) if isinstance(value, float) else value, unit, context)
        with self._lock:
            self.figures.append(fig)
            if self.path:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps({**asdict(fig), "at": time.time()}) + "\n")
        return fig

    def record_series(self, name: str, values: list[float], unit: str = "s", **context: Any) -> None:
        """Record the median, p99 and max of a series of samples."""
        if not values:
            return
        ordered = sorted(values)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        self.record(f"{name}_median", statistics.median(ordered), unit, n=len(ordered), **context)
        self.record(f"{name}_p99", p99, unit, n=len(ordered), **context)
        self.record(f"{name}_max", ordered[-1], unit, n=len(ordered), **context)

    def lines(self) -> list[str]:
        with self._lock:
            return [f.line() for f in self.figures]


def wait_for(condition: Any, timeout: float, interval: float = 0.2, what: str = "condition") -> Any:
    """Poll ``condition()`` until it returns a truthy value; return it, or raise TimeoutError naming ``what``.

    Exceptions raised by ``condition`` count as "not yet" (a service that is still starting refuses
    connections); the last one is chained to the TimeoutError.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached within {timeout:.0f}s") from last_exc
        time.sleep(interval)
