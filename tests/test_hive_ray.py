"""One real hive round on a real local Ray: two tiny PPO specialists of the toy two-niche task, merged,
voted; the promoted merge must beat the uniform soup on both niches.

Margin: returns are 0..8 per episode (uniform play 2). Over training seeds 0, 1, 2 (2,048 PPO steps each,
64 validation seeds, one torch thread per actor) the promoted merge (task arithmetic each time) beat the
soup by +0.80/+1.09, +1.11/+2.30 and +1.69/+1.45 (left/right); the test asks for +0.4. The round also
runs a small lambda grid and a one-sweep per-layer lambda search on the validation seeds, and must judge its
targets on the held-out seeds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from metabonk.hive.federated import LAYERS, HiveConfig, run_hive
from metabonk.hive.report import write_report
from metabonk.hive.specialist import TrainBudget

MARGIN = 0.4


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200_000_000, log_to_driver=False)
    yield
    ray.shutdown()


def test_one_round_merge_beats_soup_on_both_niches(local_ray: None, tmp_path: Path) -> None:
    cfg = HiveConfig(specialists=["left", "right"], rounds=1, dm="off", episodes=64, seed=0,
                     budget=TrainBudget(total_steps=2048, num_steps=8, lr=3e-3), test_episodes=32,
                     scales=[1.0, 1.5], layer_sweeps=1, layer_grid=[0.5, 2.0])
    doc = run_hive(cfg)
    r = doc["rounds"][0]
    promoted = r["promoted"]
    assert promoted.startswith("merge:")
    for niche in ("left", "right"):
        s = r["scores"][niche]
        # each specialist learned its own niche (uniform play scores 2 of 8)
        assert s[f"specialist:{niche}"]["mean"] >= s["start"]["mean"] + 3.0
        assert s[promoted]["mean"] >= s["merge:soup"]["mean"] + MARGIN, (niche, promoted, s)
    assert r["targets"]["gap_over_soup_points"] > 0
    # the vote chose on the validation seeds; the targets are the held-out seeds' figures for that choice
    held, t = r["heldout"], r["targets"]
    assert held["episodes"] == 32 and t["split"] == "held-out" and t["promoted"] == promoted
    assert r["targets_validation"]["split"] == "validation"
    assert all(held["scores"][n][promoted]["episodes"] == 32 and r["scores"][n][promoted]["episodes"] == 64
               for n in ("left", "right"))
    assert t["own_niche_normalised"] == {n: held["normalised"][promoted][n] for n in ("left", "right")}
    assert {"merge:task-arith@1", "merge:task-arith@1.5", LAYERS} <= set(r["vote"])
    assert r["layer_search"]["candidates_scored"] > 1 and set(r["layer_search"]["layer_scales"].values()) <= {
        0.5, 1.0, 1.5, 2.0}
    assert all(t is not None and t["units"] == 16 for t in r["time_constants"].values())
    assert set(r["tau_shift"]["from_start"]) == {"left", "right"} and "left/right" in r["tau_shift"]["between"]
    doc.pop("promoted_state")
    paths = write_report(doc, tmp_path)
    assert "promoted" in paths["report"].read_text().lower()
    assert paths["plot"].stat().st_size > 1000 and paths["json"].is_file()
