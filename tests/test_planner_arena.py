"""System 2 in Arena: one planner decision per level-up menu, recorded per game, feeding the curator."""

from __future__ import annotations

from pathlib import Path

from metabonk.planner.experiment import run_games, summarize
from metabonk.planner.playbook import PlaybookStore
from metabonk.planner.reflect import Curator, Reflector
from metabonk.planner.summary import GameSummary

FAST = {"stage_steps": 300, "xp_base": 1.0, "xp_growth": 0.5}


def test_card_picks_reach_the_game_and_the_playbook(tmp_path: Path) -> None:
    offered: dict[int, list[list[str]]] = {0: [], 1: []}

    def pick_armor(summary: GameSummary, options: list[str], row: int) -> int:
        offered[row].append(options)
        assert 0 <= summary.hp_frac <= 1 and summary.time_limit_s == 5.0
        return options.index("armor") if "armor" in options else len(options) - 1

    stats = run_games(pick_armor, 2, seed=7, overrides=FAST)
    assert len(stats) == 2 and all(s is not None for s in stats)
    picks = [p for s in stats for p in s.picks]
    assert picks
    for row, s in enumerate(stats):  # one decision per menu opening, cached while the menu stays open
        assert len(s.picks) == len(offered[row])
        for opts, p in zip(offered[row], s.picks, strict=True):
            assert p == ("armor" if "armor" in opts else opts[-1])
    for s in stats:
        assert s.level >= len(s.picks) and 0 < s.survival <= 1
    store = PlaybookStore(tmp_path / "pb.sqlite")
    curator, reflector = Curator(store), Reflector()
    for s in stats:
        curator.update(s, reflector.reflect(s, baseline=s.survival - 0.5))  # pretend both beat the baseline
    tags = {t for e in store.entries() for t in e.tags}
    assert {f"card:{p}" for p in picks} <= tags and store.head >= 1
    assert summarize(stats)["survival"]["n"] == 2
