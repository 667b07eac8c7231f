"""The study's plots: history, importance (with and without importances) and tradeoff, as readable PNGs."""

from __future__ import annotations

from pathlib import Path

import cv2

from runtime.evaluation.tuning.plots import plot_history, plot_importances, plot_tradeoff


def test_every_study_plot_is_a_readable_png(tmp_path: Path) -> None:
    written = [
        plot_history([0, 1, 2, 3], [0.4, None, 0.6, 0.5], 0, True, "success_rate", tmp_path / "history.png"),
        plot_importances({"planner.samples": 0.7, "planner.horizon": 0.3}, "", tmp_path / "importance.png"),
        plot_importances({}, "needs 2 complete trials", tmp_path / "empty.png"),
        plot_tradeoff([(10.0, 0.4, 0), (12.0, 0.6, 2)], 2, 0, "plan ms (p50)", "success_rate",
                      tmp_path / "tradeoff.png", (0.0, 1.0)),
        plot_history([0], [None], None, False, "action error", tmp_path / "all_failed.png"),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)
    for path in written:
        image = cv2.imread(str(path))
        assert image is not None and image.shape[0] > 100 and image.shape[1] > 300, path.name
