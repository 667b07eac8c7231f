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
    difference_interval: tuple[float, float]  # 95 %, Wald for paired proportions
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
    difference = (only_b - only_a) / n
    spread = math.sqrt(max(0.0, (only_a + only_b) - (only_b - only_a) ** 2 / n)) / n
    return PairedComparison(n, both, only_a, only_b, n - both - only_a - only_b, difference,
                            (max(-1.0, difference - z * spread), min(1.0, difference + z * spread)),
                            mcnemar_exact(only_a, only_b))


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: the binomial(discordant, 1/2) probability of a split this uneven."""
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0
    fewer = min(only_a, only_b)
    tail = sum(math.comb(discordant, k) for k in range(fewer + 1)) / 2 ** discordant
    return min(1.0, 2 * tail)
