"""Retrieval relevance with the bundled MiniLM, self-consistency voting, the route bandit, the rule route."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from metabonk.planner.consistency import majority
from metabonk.planner.playbook import Entry, PlaybookStore
from metabonk.planner.router import Router, load_router, save_router
from metabonk.planner.rules import rule_card, rule_intent
from metabonk.planner.summary import GameSummary

ENTRIES = [
    Entry("e1", "When a boss spawns, circle it at long range and never stand in contact.", ["boss"]),
    Entry("e2", "Take armor or max HP cards while health is low.", ["card:armor", "card:max_hp"]),
    Entry("e3", "Early in the stage, collect every XP gem to level up quickly.", ["xp"]),
    Entry("e4", "Stay away from the walls so enemies cannot corner you.", ["movement"]),
    Entry("e5", "Projectile count and damage cards clear big waves faster.", ["card:projectile_count"]),
]
QUERIES = [
    ("a huge boss enemy just appeared, how to fight it", "e1"),
    ("my HP is almost gone, which upgrade should I pick", "e2"),
    ("how do I gain experience and levels fast at the start", "e3"),
    ("I keep getting trapped against the edge of the arena", "e4"),
    ("which upgrade kills a big wave of enemies faster", "e5"),
]


@pytest.mark.llm
def test_minilm_retrieval_ranks_the_right_entry_first() -> None:
    from metabonk.planner.retrieval import Retriever

    r = Retriever()
    for query, want in QUERIES:
        top = r.top_k(query, ENTRIES, k=2)
        assert top[0].id == want, (query, [e.id for e in top])
    # embeddings are cached: a second pass embeds only the new query
    before = len(r._cache)
    r.top_k("boss fight", ENTRIES, k=1)
    assert len(r._cache) == before + 1


def test_majority_vote() -> None:
    assert majority(["armor", "luck", "armor"]) == ("armor", pytest.approx(2 / 3))
    assert majority(["luck", "armor"])[0] == "luck"  # ties: first answer
    with pytest.raises(ValueError):
        majority([])


def test_router_learns_best_route(tmp_path: Path) -> None:
    """UCB1 on Bernoulli outcomes (rule 0.7, cot 0.4, direct 0.3) ends up choosing rule most often."""
    rng = random.Random(0)
    p = {"direct": 0.3, "cot": 0.4, "rule": 0.7}
    router = Router()
    for _ in range(400):
        route = router.choose()
        router.update(route, float(rng.random() < p[route]))
    assert router.best() == "rule"
    assert router.counts["rule"] > 0.6 * 400  # far above a uniform 1/3
    restored = Router.from_dict(router.to_dict())
    assert restored.counts == router.counts and restored.best() == "rule"
    store = PlaybookStore(tmp_path / "pb.sqlite")
    save_router(store, router)
    assert load_router(store).counts == router.counts  # persisted beside the playbook
    with pytest.raises(ValueError):
        router.update("magic", 1.0)


def test_rule_route() -> None:
    low = GameSummary(hp=20, max_hp=100, level=3, time_s=40, enemies_near=5)
    ok = GameSummary(hp=90, max_hp=100, level=6, time_s=40, boss=True)
    assert rule_card(["luck", "armor", "xp_gain"], low, []) == 1
    assert rule_intent(low) == "flee" and rule_intent(ok) == "fight_boss"
    assert rule_intent(GameSummary(hp=90, max_hp=100, level=2, time_s=5)) == "collect_xp"
    # diminishing returns: a fifth armor loses to a fresh max_hp card
    stacked = GameSummary(hp=90, max_hp=100, level=9, time_s=40, build={"armor": 5})
    assert rule_card(["armor", "max_hp"], stacked, []) == 1
