"""Small helpers shared by the benchmarks: timing, percentiles and result rendering."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Result:
    """One measured figure, compared with a baseline measured in the same run."""

    name: str
    value: float
    baseline: float
    unit: str = "s"
    target_ratio: float | None = None  # e.g. 1.10 means "value may be at most 10% above baseline"
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("inf")

    def render(self) -> str:
        verdict = ""
        if self.target_ratio is not None:
            verdict = "  [meets target]" if self.ratio <= self.target_ratio else "  [MISSES target]"
            verdict = f"  target <= {self.target_ratio:.2f}{verdict}"
        note = f"  ({self.note})" if self.note else ""
        return (
            f"{self.name}: {self.value:.6g}{self.unit} vs baseline {self.baseline:.6g}{self.unit}"
            f"  ratio {self.ratio:.3f}{verdict}{note}"
        )


def best_of(fn: Callable[[], object], *, repeat: int = 5, number: int = 1) -> float:
    """The best mean time per call over ``repeat`` rounds of ``number`` calls."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def percentile(samples: list[float], pct: float) -> float:
    """The ``pct`` percentile (0-100) of ``samples``, nearest-rank."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered)) - 1))
    return ordered[rank]


def median(samples: list[float]) -> float:
    return statistics.median(samples) if samples else float("nan")
