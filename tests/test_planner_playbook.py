"""Playbook store: versions with diff and reason, revert, reflections, curator edits under a budget, CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from metabonk.common.errors import MetabonkError
from metabonk.planner.playbook import Entry, PlaybookStore
from metabonk.planner.reflect import Curator, Edit, EpisodeStats, Reflection, Reflector
from metabonk.planner.rules import rule_card
from metabonk.planner.summary import GameSummary


def _stats(seed: int, survived: float, picks: list[str]) -> EpisodeStats:
    return EpisodeStats(
        seed=seed, survived_s=survived, time_limit_s=100.0, died=survived < 100, level=5, picks=picks
    )


def test_versions_diff_and_revert(tmp_path: Path) -> None:
    store = PlaybookStore(tmp_path / "pb.sqlite")
    assert store.head == 0 and store.entries() == []
    a = Entry(store.new_id(), "Kite bosses in wide circles", ["boss"])
    v1 = store.commit([a], "seed entry")
    b = Entry(store.new_id(), "Prefer armor early", ["card:armor"], helpful=2)
    v2 = store.commit([a, b], "learned armor")
    assert (v1, v2) == (1, 2)
    assert store.commit([a, b], "no change") == 2  # unchanged content makes no version
    d = store.diff(1, 2)
    assert "+[e2]" in d and "Prefer armor early" in d and "Kite" not in d
    v3 = store.commit([b], "dropped boss entry")
    assert [e.id for e in store.entries()] == ["e2"]
    v4 = store.revert(v1)
    assert v4 == v3 + 1
    assert [e.text for e in store.entries()] == ["Kite bosses in wide circles"]
    hist = store.history()
    assert [h.version for h in hist] == [0, 1, 2, 3, 4]
    assert hist[4].reason == "revert to v1" and "-[e2]" in hist[4].diff
    assert store.new_id() == "e3"  # ids are never reused after delete + revert
    with pytest.raises(MetabonkError):
        store.get(99)
    with pytest.raises(MetabonkError):
        store.commit([a], "  ")
    store.close()
    reopened = PlaybookStore(tmp_path / "pb.sqlite")
    assert reopened.head == 4 and reopened.entries()[0].id == "e1"


def test_curator_learns_card_preferences_and_keeps_budget(tmp_path: Path) -> None:
    store = PlaybookStore(tmp_path / "pb.sqlite")
    reflector, curator = Reflector(), Curator(store, max_entries=3)
    # armor runs survive longer than baseline, luck runs die early
    for seed in range(6):
        good = seed % 2 == 0
        stats = _stats(seed, 90.0 if good else 30.0, ["armor", "armor"] if good else ["luck", "magnet"])
        curator.update(stats, reflector.reflect(stats, baseline=0.6))
    entries = store.entries()
    by_tag = {t: e for e in entries for t in e.tags}
    assert by_tag["card:armor"].helpful == 3 and by_tag["card:armor"].harmful == 0
    assert by_tag["card:luck"].harmful == 3 and by_tag["card:luck"].text.startswith("Avoid luck")
    assert by_tag["card:armor"].text.startswith("Prefer armor")
    assert len(store.reflections()) == 6
    assert store.head == 6  # one version per episode, each with a reason
    assert "episode seed 5" in store.get(6).reason
    # the learned playbook changes the rule route: armor beats an (otherwise better-prior) damage card
    summary = GameSummary(hp=80, max_hp=100, level=3, time_s=20)
    assert rule_card(["luck", "armor"], summary, entries, use_prior=False) == 1
    # budget: adding more subjects than max_entries trims the least informative ones
    new = curator.apply(entries, [Edit("add", text=f"note {i}", tags=[f"t{i}"]) for i in range(4)])
    assert len(new) == 3 and {"card:armor", "card:luck"} <= {t for e in new for t in e.tags}


def test_curator_merges_duplicates_and_deletes(tmp_path: Path) -> None:
    store = PlaybookStore(tmp_path / "pb.sqlite")
    curator = Curator(store)
    a = Entry("e1", "kite bosses", ["boss"], helpful=1)
    b = Entry("e2", "circle the boss", ["boss"], helpful=2, harmful=1)
    c = Entry("e3", "useless", ["x"])
    edits = curator.propose(_stats(0, 50, []), Reflection("r", [], 0.0), [a, b, c])
    assert edits and edits[0].op == "merge" and edits[0].ids == ["e1", "e2"]
    out = curator.apply(
        [a, b, c], [*edits, Edit("delete", id="e3"), Edit("rewrite", id="e1", text="kite wide")]
    )
    assert [(e.id, e.text, e.helpful, e.harmful) for e in out] == [("e1", "kite wide", 3, 1)]


def test_playbook_cli(tmp_path: Path) -> None:
    from metabonk.cli import app

    db = tmp_path / "pb.sqlite"
    store = PlaybookStore(db)
    store.commit([Entry(store.new_id(), "Prefer armor", ["card:armor"])], "first")
    store.commit([Entry("e1", "Prefer armor and regen", ["card:armor"])], "second")
    store.close()
    run = CliRunner().invoke
    r = run(app, ["playbook", "history", "--db", str(db)])
    assert r.exit_code == 0 and "v2" in r.output and "second" in r.output
    r = run(app, ["playbook", "diff", "1", "2", "--db", str(db)])
    assert r.exit_code == 0 and "+[e1]" in r.output and "regen" in r.output
    r = run(app, ["playbook", "revert", "1", "--db", str(db)])
    assert r.exit_code == 0 and "restored v1 as v3" in r.output
    r = run(app, ["playbook", "show", "--db", str(db)])
    assert r.exit_code == 0 and "Prefer armor" in r.output and "regen" not in r.output
    r = run(app, ["playbook", "show", "--db", str(tmp_path / "missing.sqlite")])
    assert r.exit_code != 0 and isinstance(r.exception, MetabonkError)
