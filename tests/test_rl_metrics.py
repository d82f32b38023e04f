"""RL evaluation figures (metabonk.policy.rl_metrics) against hand-computed values; the curve PNG is written."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from metabonk.common.errors import MetabonkError
from metabonk.policy.rl_metrics import atari_game, human_normalized, iqm, plot_learning_curves, score_summary


def test_iqm_is_the_mean_of_the_middle_half() -> None:
    # 8 values: the lowest 2 and the highest 2 are dropped, the middle 4 (2, 3, 4, 5) averaged
    assert iqm([7, 0, 5, 1, 6, 2, 4, 3]) == pytest.approx(3.5)
    # an outlier moves the mean, not the IQM
    x = np.array([1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 3.0, 1000.0])
    assert iqm(x) == pytest.approx(2.0)
    assert x.mean() > 100


def test_human_normalised_score_formula() -> None:
    # DQN Zoo references: Pong random -20.7, human 14.6; Breakout random 1.7, human 30.5
    assert human_normalized("ale:Pong", [-20.7, 14.6, 0.0]) == pytest.approx([0.0, 1.0, 20.7 / 35.3])
    assert human_normalized("ale:Breakout", 30.5) == pytest.approx(1.0)
    assert human_normalized("ale:Breakout", 16.1) == pytest.approx((16.1 - 1.7) / 28.8)
    assert human_normalized("arena", [1.0]) is None
    assert human_normalized("ale:Tetris", [1.0]) is None
    assert atari_game("ale:SpaceInvaders") == "space_invaders"


def test_score_summary_values_and_intervals() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 2.0, size=32)
    s = score_summary(x, "ale:Pong", reps=500)
    assert s["runs"] == 32
    assert s["mean"] == pytest.approx(x.mean())
    assert s["median"] == pytest.approx(np.median(x))
    assert s["std"] == pytest.approx(x.std(ddof=1))
    assert s["iqm"] == pytest.approx(np.sort(x)[8:24].mean())
    for k in ("mean", "median", "iqm"):
        lo, hi = s[f"{k}_ci95"]
        assert lo < s[k] < hi
    # a bootstrap 95 % interval of the mean of 32 draws is about ±1.96 σ/√32 ≈ ±0.69 wide
    assert 0.4 < (s["ci_high"] - s["ci_low"]) / 2 < 1.0
    assert s["hns_mean"] == pytest.approx((x.mean() + 20.7) / 35.3)
    lo, hi = s["hns_iqm_ci95"]
    assert lo < s["hns_iqm"] < hi
    assert "hns_mean" not in score_summary(x, "arena", reps=200)
    with pytest.raises(MetabonkError):
        score_summary([])
    with pytest.raises(MetabonkError):
        score_summary([1.0, float("nan")])


def test_learning_curves_png(tmp_path) -> None:
    path = plot_learning_curves(
        {"dream": [(0, [-21, -20, -21]), (50_000, [-5, 0, 3]), (100_000, [10, 12, 15])],
         "ppo": [(0, -21.0), (100_000, -19.0)]},
        tmp_path / "report" / "curves.png", title="Pong")
    img = Image.open(path)
    assert img.format == "PNG" and img.size[0] > 200 and img.size[1] > 150
    assert not list(path.parent.glob(".*"))  # no temporary file left behind
    with pytest.raises(MetabonkError):
        plot_learning_curves({}, tmp_path / "x.png")
    with pytest.raises(MetabonkError):
        plot_learning_curves({"a": []}, tmp_path / "y.png")
