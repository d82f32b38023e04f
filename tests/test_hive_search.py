"""Choosing merge coefficients on validation seeds (metabonk.hive.search) and judging the promoted merge on
held-out seeds (metabonk.hive.federated.targets): both retention readings, the seed split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metabonk.common.errors import MetabonkError
from metabonk.hive.evaluate import NicheScore
from metabonk.hive.federated import HiveConfig, mean_normalised, targets, vote
from metabonk.hive.merge import StateDict
from metabonk.hive.search import candidate_name, grid_candidates, layer_search

BASE: StateDict = {"a.w": torch.zeros(2), "b.w": torch.zeros(2), "b.bias": torch.zeros(1), "n": torch.tensor([3])}
ONE: StateDict = {"a.w": torch.ones(2), "b.w": torch.ones(2), "b.bias": torch.ones(1), "n": torch.tensor([5])}


def test_grid_candidates_scale_only_the_scaled_methods() -> None:
    from metabonk.hive.merge import MergeOptions

    c = grid_candidates(BASE, [ONE, ONE], ["task-arith", "ram", "soup"], [0.5, 2.0], MergeOptions())
    assert set(c) == {"merge:task-arith@0.5", "merge:task-arith@2", "merge:ram@0.5", "merge:ram@2", "merge:soup"}
    assert c["merge:task-arith@0.5"]["a.w"].tolist() == [1.0, 1.0]  # 0.5 * (1 + 1)
    assert c["merge:task-arith@2"]["b.bias"].tolist() == [4.0]
    assert c["merge:soup"]["a.w"].tolist() == [1.0, 1.0]
    assert candidate_name("soup", 2.0) == "merge:soup" and candidate_name("ties", 1.0) == "merge:ties@1"


def test_layer_search_finds_each_layers_best_lambda_and_never_accepts_worse() -> None:
    # One specialist with tau = 1 everywhere: the merged tensor of group g equals lambda_g. The score peaks
    # at a different lambda per group; coordinate ascent over the grid must find all of them.
    target = {"a": 2.0, "b": 0.5}
    calls: list[int] = []

    def evaluate(states: dict[str, StateDict]) -> dict[str, float]:
        calls.append(len(states))
        return {k: -sum((float(sd[f"{g}.w"][0]) - t) ** 2 for g, t in target.items()) for k, sd in states.items()}

    out = layer_search(BASE, [ONE], evaluate, grid=[0.5, 1.0, 2.0], sweeps=3, start=1.0)
    assert out["layer_scales"] == {"a": 2.0, "b": 0.5}
    assert out["validation_vote"] == 0.0
    assert out["state"]["b.bias"].tolist() == [0.5] and out["state"]["n"].tolist() == [3]
    # first score + 2 groups x 2 values per sweep; the second sweep moves nothing and stops the search
    assert out["candidates_scored"] == sum(calls) == 1 + 4 + 4
    stuck = layer_search(BASE, [ONE], lambda s: dict.fromkeys(s, 0.0), grid=[0.5, 2.0], sweeps=2, start=1.0)
    assert stuck["layer_scales"] == {"a": 1.0, "b": 1.0}  # ties keep the current lambda


def _table(start: float, spec: float, merge: float, soup: float, k: int = 32) -> dict[str, dict[str, NicheScore]]:
    rng = np.random.default_rng(0)

    def s(m: float) -> NicheScore:
        return NicheScore(m + rng.normal(0, 0.5, k))

    row = {"start": s(start), "specialist:x": s(spec), "merge:m": s(merge), "merge:soup": s(soup)}
    for c, v in (("start", start), ("specialist:x", spec), ("merge:m", merge), ("merge:soup", soup)):
        row[c].returns += v - row[c].mean  # exact means
    return {"x": row}


def test_targets_report_both_retention_readings_on_the_given_split() -> None:
    # start 2, specialist 8, merge 7.3: 91 % of the raw score but 88 % of the gain over the start
    table = _table(2.0, 8.0, 7.3, 5.0)
    voted = vote(table, list(table["x"]))
    assert mean_normalised(table, table, "merge:m") == pytest.approx(voted["vote"]["merge:m"])
    t = targets(table, voted, "merge:soup", "held-out")  # promoted is whatever the validation vote chose
    assert t["promoted"] == "merge:soup" and t["split"] == "held-out"
    t = targets(table, voted, "merge:m", "held-out")
    assert t["own_niche_raw_ratio"]["x"] == pytest.approx(7.3 / 8.0)
    assert t["own_niche_normalised"]["x"] == pytest.approx(100 * 5.3 / 6.0)
    assert t["retention_raw_met"] and not t["retention_gain_met"]
    lo, hi = t["own_niche_normalised_ci95"]["x"]
    assert lo < t["own_niche_normalised"]["x"] < hi
    assert t["gap_over_soup_points"] == pytest.approx(100 * 2.3 / 6.0) and t["gap_met"]
    negative = _table(-3.0, -1.0, -1.1, -2.0)
    tn = targets(negative, vote(negative, list(negative["x"])), "merge:m", "validation")
    assert np.isnan(tn["own_niche_raw_ratio"]["x"]) and not tn["retention_raw_met"] and tn["retention_gain_met"]


def test_held_out_seeds_must_not_overlap_the_validation_seeds() -> None:
    with pytest.raises(MetabonkError, match="overlap"):
        HiveConfig(specialists=["left", "right"], episodes=64, val_seed=10_000, test_seed=10_032)
    with pytest.raises(MetabonkError, match="scales"):
        HiveConfig(specialists=["left", "right"], scales=[0.0])
    HiveConfig(specialists=["left", "right"], episodes=64, test_seed=10_064)
    HiveConfig(specialists=["left", "right"], test_episodes=0, test_seed=10_000)
