"""Scores as RL practitioners report them: episode return first, its interquartile mean (IQM) and 95 %
stratified-bootstrap intervals (rliable), the human-normalised score (HNS) on Atari, and learning curves
(return vs real env steps) as PNG for a run's report.

`score_summary(returns, env_spec)` is what the evaluator, PPO and the online loop call on per-seed returns;
`plot_learning_curves({name: [(steps, returns), ...]}, path)` draws any number of runs on one chart.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metabonk.common.errors import MetabonkError

# Random and human scores per Atari game, (random, human), from DeepMind's DQN Zoo
# (github.com/google-deepmind/dqn_zoo, dqn_zoo/atari_data.py: "evaluation scores (undiscounted returns),
# each averaged over at least 3 episodes ... episode length capped to 108,000 frames"), the references
# the Atari 100k literature (SimPLe, DreamerV3, DIAMOND, rliable's Atari 100k data) normalises by.
ATARI_RANDOM_HUMAN: dict[str, tuple[float, float]] = {
    "pong": (-20.7, 14.6),
    "breakout": (1.7, 30.5),
}


def atari_game(env_spec: str) -> str | None:
    """'ale:Pong' → 'pong', 'ale:SpaceInvaders' → 'space_invaders'; None for a spec that is no ALE game."""
    if not env_spec.startswith("ale:"):
        return None
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", env_spec[4:].strip()).lower()


def human_normalized(env_spec: str, scores: Any) -> np.ndarray | None:
    """(score - random) / (human - random) per score, for an Atari game with references; else None."""
    game = atari_game(env_spec)
    if game is None or game not in ATARI_RANDOM_HUMAN:
        return None
    random, human = ATARI_RANDOM_HUMAN[game]
    return (np.asarray(scores, np.float64) - random) / (human - random)


def iqm(x: Any) -> float:
    """Interquartile mean: the mean of the middle 50 % of the values (rliable's aggregate_iqm)."""
    from rliable import metrics

    arr = np.asarray(x, np.float64).reshape(-1, 1)
    if arr.size == 0:
        raise MetabonkError("IQM of no values")
    return float(metrics.aggregate_iqm(arr))


def _intervals(x: np.ndarray, reps: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, median, iqm) of x and their 95 % bootstrap intervals (low, high) over runs, via rliable."""
    from rliable import library, metrics

    def stats(scores: np.ndarray) -> np.ndarray:
        # the median over runs (rliable's aggregate_median is the median over tasks of per-task means)
        return np.array([metrics.aggregate_mean(scores), np.median(scores), metrics.aggregate_iqm(scores)])

    point = stats(x[:, None])
    if len(x) < 2:
        return point, point.copy(), point.copy()
    with warnings.catch_warnings():  # arch >= 7 deprecates the RandomState that rliable hands it
        warnings.simplefilter("ignore", FutureWarning)
        _, cis = library.get_interval_estimates({"x": x[:, None]}, stats, reps=reps,
                                                random_state=np.random.RandomState(seed))
    return point, cis["x"][0], cis["x"][1]


def score_summary(returns: Any, env_spec: str | None = None, reps: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Per-seed episode returns → mean, median, std, IQM with 95 % stratified-bootstrap intervals, and the
    same for the human-normalised score (`hns_*`) when `env_spec` is an Atari game with references."""
    x = np.asarray(returns, np.float64).reshape(-1)
    if x.size == 0 or not np.isfinite(x).all():
        raise MetabonkError(f"score_summary needs finite returns, got {x.size} values")
    out: dict[str, Any] = {"runs": int(x.size), "std": float(x.std(ddof=1)) if x.size > 1 else 0.0}
    point, low, high = _intervals(x, reps, seed)
    for i, name in enumerate(("mean", "median", "iqm")):
        out[name] = float(point[i])
        out[f"{name}_ci95"] = (float(low[i]), float(high[i]))
    out["ci_low"], out["ci_high"] = out["mean_ci95"]
    hns = human_normalized(env_spec, x) if env_spec is not None else None
    if hns is not None:
        point, low, high = _intervals(hns, reps, seed)
        for i, name in enumerate(("mean", "median", "iqm")):
            out[f"hns_{name}"] = float(point[i])
            out[f"hns_{name}_ci95"] = (float(low[i]), float(high[i]))
        out["hns_reference"] = dict(zip(("random", "human"), ATARI_RANDOM_HUMAN[str(atari_game(env_spec or ""))],
                                        strict=True))
    return out


Curve = Sequence[tuple[float, Any]]
"""Points (real env steps, return): the return is one number or the per-seed returns at that step."""


def plot_learning_curves(
    curves: Mapping[str, Curve], path: str | Path, title: str = "", ylabel: str = "episode return"
) -> Path:
    """Return vs real env steps, one line per run (mean over seeds; band: min..max over seeds), as a PNG
    written atomically to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not curves:
        raise MetabonkError("plot_learning_curves needs at least one curve")
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    try:
        for name, points in curves.items():
            if len(points) == 0:
                raise MetabonkError(f"learning curve '{name}' has no points")
            pts = sorted(points, key=lambda p: p[0])
            steps = np.array([float(s) for s, _ in pts])
            vals = [np.asarray(r, np.float64).reshape(-1) for _, r in pts]
            mean = np.array([v.mean() for v in vals])
            (line,) = ax.plot(steps, mean, marker="o" if len(pts) < 20 else None, label=name)
            if any(v.size > 1 for v in vals):
                ax.fill_between(steps, [v.min() for v in vals], [v.max() for v in vals],
                                color=line.get_color(), alpha=0.2)
        ax.set_xlabel("real env steps")
        ax.set_ylabel(ylabel)
        if title:
            ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".png", dir=out.parent)
        os.close(fd)
        try:
            fig.savefig(tmp, format="png", bbox_inches="tight")
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    finally:
        plt.close(fig)
    return out


__all__ = ["ATARI_RANDOM_HUMAN", "atari_game", "human_normalized", "iqm", "plot_learning_curves", "score_summary"]
