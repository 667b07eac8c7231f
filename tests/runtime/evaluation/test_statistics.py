"""The statistics on tables whose answers are known."""

from __future__ import annotations

import pytest

from runtime.evaluation.statistics import compare_paired, mcnemar_exact, newcombe_interval, wilson_interval


@pytest.mark.parametrize(("successes", "trials", "low", "high"), [
    (8, 10, 0.4902, 0.9433),  # Newcombe (1998), table I
    (40, 50, 0.6696, 0.8876),
    (50, 50, 0.9287, 1.0),
    (0, 10, 0.0, 0.2775),
])
def test_wilson_interval_matches_published_values(successes: int, trials: int, low: float, high: float) -> None:
    assert wilson_interval(successes, trials) == pytest.approx((low, high), abs=1e-4)


def test_wilson_interval_refuses_impossible_counts() -> None:
    with pytest.raises(ValueError, match=r"successes \(11\) must lie in 0..trials \(10\)"):
        wilson_interval(11, 10)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_mcnemar_exact_on_known_splits() -> None:
    assert mcnemar_exact(2, 10) == pytest.approx(2 * (1 + 12 + 66) / 4096)  # 0.0386
    assert mcnemar_exact(10, 2) == mcnemar_exact(2, 10)
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)


def test_paired_comparison_counts_each_outcome_pair_and_the_difference() -> None:
    # 200 goals: 150 both, 4 only A, 6 only B, 40 neither -> B is 1 point better, not significantly.
    a = [True] * 150 + [True] * 4 + [False] * 6 + [False] * 40
    b = [True] * 150 + [False] * 4 + [True] * 6 + [False] * 40
    result = compare_paired(a, b)
    assert (result.goals, result.both, result.only_a, result.only_b, result.neither) == (200, 150, 4, 6, 40)
    assert result.difference == pytest.approx(0.01)
    low, high = result.difference_interval
    assert low < 0 < 0.01 < high and high - low == pytest.approx(2 * 1.96 * (10 - 4 / 200) ** 0.5 / 200, rel=0.15)
    assert result.p_value == pytest.approx(mcnemar_exact(4, 6)) and result.p_value > 0.5
    assert result.as_dict()["difference_interval"] == list(result.difference_interval)


def test_paired_comparison_refuses_runs_on_different_goals() -> None:
    with pytest.raises(ValueError, match="same goals: 3 outcomes against 2"):
        compare_paired([True, False, True], [True, True])
    with pytest.raises(ValueError, match="no goals"):
        compare_paired([], [])


def test_newcombe_interval_on_a_large_table_agrees_with_wald_and_stays_open_without_discordant_goals() -> None:
    # Agresti's approval ratings (both 794, only B 150, only A 86, neither 570): B − A = 0.04; at n = 1600 the
    # Wald interval, 0.04 ± 1.96 √(236 − 64²/1600) / 1600 = (0.0213, 0.0587), is accurate and Newcombe's agrees.
    low, high = newcombe_interval(794, 150, 86, 570)
    assert (low, high) == pytest.approx((0.0213, 0.0587), abs=0.0005)
    # 50 goals, both runs reach all 49 of the same ones: the difference is 0, but not known to be exactly 0.
    low, high = newcombe_interval(49, 0, 0, 1)
    assert low < 0 < high and high - low > 0.05
    low, high = newcombe_interval(0, 10, 0, 0)  # B reached all 10 goals, A none: near 1, never above
    assert 0.5 < low < high == 1.0
