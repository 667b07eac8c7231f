"""Success rates with their uncertainty: Wilson intervals, and two runs on the same goals compared paired.

50 episodes give about ±11 points at 80 % success; a claim like "INT8 within 2 points of FP32" needs both
runs on the same goals and seeds, compared on the goals where they disagree (McNemar's exact test).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

Z_95 = 1.959963984540054  # two-sided 95 % normal quantile


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a success rate (95 % by default); (0, 1) for no trials."""
    if not 0 <= successes <= trials:
        raise ValueError(f"successes ({successes}) must lie in 0..trials ({trials})")
    if trials == 0:
        return 0.0, 1.0
    rate = successes / trials
    denominator = 1 + z * z / trials
    centre = (rate + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class PairedComparison:
    """Run A against run B on the same goals: counts of each outcome pair and the difference B − A."""

    goals: int
    both: int
    only_a: int  # goals A reached and B missed
    only_b: int
    neither: int
    difference: float  # success rate of B minus that of A
    difference_interval: tuple[float, float]  # 95 %, Newcombe's hybrid score interval
    p_value: float  # McNemar's exact two-sided test on the discordant goals

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"difference_interval": list(self.difference_interval)}


def compare_paired(a: Sequence[bool], b: Sequence[bool], z: float = Z_95) -> PairedComparison:
    """Compare two runs goal by goal; `a[i]` and `b[i]` are the outcomes on the same goal and seed."""
    if len(a) != len(b):
        raise ValueError(f"paired runs must cover the same goals: {len(a)} outcomes against {len(b)}")
    if not a:
        raise ValueError("paired runs: no goals")
    both = sum(x and y for x, y in zip(a, b, strict=True))
    only_a = sum(x and not y for x, y in zip(a, b, strict=True))
    only_b = sum(y and not x for x, y in zip(a, b, strict=True))
    n = len(a)
    neither = n - both - only_a - only_b
    return PairedComparison(n, both, only_a, only_b, neither, (only_b - only_a) / n,
                            newcombe_interval(both, only_b, only_a, neither, z), mcnemar_exact(only_a, only_b))


def newcombe_interval(both: int, only_b: int, only_a: int, neither: int, z: float = Z_95) -> tuple[float, float]:
    """Newcombe's hybrid score interval (1998, method 10) for rate(B) − rate(A) on paired outcomes: Wilson
    intervals of both rates, combined with their correlation. Unlike the Wald interval it does not shrink to a
    point when no goal is discordant."""
    n = both + only_b + only_a + neither
    rate_b, rate_a = (both + only_b) / n, (both + only_a) / n
    low_b, high_b = wilson_interval(both + only_b, n, z)
    low_a, high_a = wilson_interval(both + only_a, n, z)
    margins = (both + only_b) * (only_a + neither) * (both + only_a) * (only_b + neither)
    phi = (both * neither - only_b * only_a) / math.sqrt(margins) if margins > 0 else 0.0
    difference = rate_b - rate_a
    below = math.sqrt(max(0.0, (rate_b - low_b) ** 2 - 2 * phi * (rate_b - low_b) * (high_a - rate_a)
                          + (high_a - rate_a) ** 2))
    above = math.sqrt(max(0.0, (high_b - rate_b) ** 2 - 2 * phi * (high_b - rate_b) * (rate_a - low_a)
                          + (rate_a - low_a) ** 2))
    return max(-1.0, difference - below), min(1.0, difference + above)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: the binomial(discordant, 1/2) probability of a split this uneven."""
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0
    fewer = min(only_a, only_b)
    tail = sum(math.comb(discordant, k) for k in range(fewer + 1)) / 2 ** discordant
    return min(1.0, 2 * tail)
