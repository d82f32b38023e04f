"""The two-speed controller: System 2's cards and intents reach System 1 and the env, a slow System 2 never
blocks System 1's tick, and `metabonk play agent` runs end to end (and fails in one line on a bad path)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from metabonk.cli import app
from metabonk.common.intents import INTENTS
from metabonk.planner.async_planner import AsyncPlanner
from metabonk.planner.experiment import ARENA_OVERRIDES
from metabonk.planner.planner import Planner, PlannerConfig
from metabonk.policy.agent import Agent
from metabonk.policy.config import PolicyConfig
from metabonk.two_systems import SafetyConfig, TwoSystemController, run_two_systems
from tests.test_policy_helpers import one_thread  # noqa: F401  (autouse fixture)


def tiny_agent(seed: int = 0) -> Agent:
    torch.manual_seed(seed)
    cfg = PolicyConfig(image_size=32, channels=(8, 8), feature_dim=32, hidden=16, intent_dim=4, head_hidden=16)
    return Agent(cfg).eval()


class FakeClient:
    """A ChatClient answering a fixed intent and the last offered card, after `delay_s` of 'thinking'."""

    name = "fake"

    def __init__(self, intent: str = "fight_boss", delay_s: float = 0.0) -> None:
        self.intent, self.delay_s, self.calls = intent, delay_s, 0

    def chat(self, messages: Any, *, schema: dict[str, Any] | None = None, **_: Any) -> str:
        self.calls += 1
        time.sleep(self.delay_s)
        assert schema is not None
        if "intent" in schema["properties"]:
            return json.dumps({"intent": self.intent})
        return json.dumps({"card": schema["properties"]["card"]["enum"][-1]})


def test_rule_planner_cards_reach_the_env() -> None:
    agent = tiny_agent()
    ap = AsyncPlanner(Planner(None), period_s=0.5, route="rule")
    ctrl = TwoSystemController(agent, ap, greedy=False, card_ranking=False)  # the live card path
    res = run_two_systems(agent, ap, episodes=1, seed=0, max_steps=300,
                          env_overrides=ARENA_OVERRIDES, controller=ctrl)
    assert res["ticks"] == sum(res["survival"]) and res["menus"] >= 1
    assert res["cards_system2"] >= 1 and res["intents_applied"] >= 1
    s2_picks = [p for p in ctrl.picks if p["by"] == "system2"]
    s2_decisions = [d for d in ap.decisions if d.kind == "card" and d.source == "rule"]
    assert len(s2_picks) == res["cards_system2"] <= len(s2_decisions)
    for pick, d in zip(s2_picks, s2_decisions, strict=False):
        assert pick["index"] == d.index and pick["options"][d.index] == d.value  # the planner's card ...
        if "applied" in pick:  # ... was the action sent, and the env's build counted that upgrade
            assert pick["sent"] == d.index and pick["applied"]
    assert res["cards_applied"] >= 1
    assert res["tick_ms_p50"] > 0 and res["system1_ms_p99"] >= res["system1_ms_p50"]


class ScoringClient(FakeClient):
    """Also scores options as the embedded model does (`choose`): prefers `favourite`, else the last option."""

    def __init__(self, favourite: str, delay_s: float = 0.0) -> None:
        super().__init__(delay_s=delay_s)
        self.favourite, self.chooses = favourite, 0

    def choose(self, messages: Any, field: str, options: list[str]) -> tuple[int, list[float]]:
        self.chooses += 1
        time.sleep(self.delay_s)
        scores = [10.0 if o == self.favourite else float(i) for i, o in enumerate(options)]
        return max(range(len(options)), key=lambda i: scores[i]), scores


def _ranked_expectation(options: list[str], favourite: str) -> int:
    return options.index(favourite) if favourite in options else len(options) - 1


def test_ranked_cards_answer_the_menu_on_the_tick_it_opens() -> None:
    from metabonk.envs.arena.spec import UPGRADES

    agent, favourite = tiny_agent(), UPGRADES[2]
    client = ScoringClient(favourite)
    ap = AsyncPlanner(Planner(client, config=PlannerConfig(samples=1)), period_s=10.0)
    ctrl = TwoSystemController(agent, ap, greedy=False, safety=SafetyConfig.off())
    res = run_two_systems(agent, ap, episodes=1, seed=0, max_steps=300, env_overrides=ARENA_OVERRIDES,
                          controller=ctrl)
    ranked = [p for p in ctrl.picks if p["by"] == "system2_ranked"]
    assert res["menus"] >= 2 and len(ranked) == res["cards_system2_ranked"] >= res["menus"] - 1, res
    pool_order = [n for n in sorted(UPGRADES, key=lambda n: (n != favourite, -UPGRADES.index(n)))]
    for pick in ranked:  # the best offered card by the client's scores over the whole pool, sent as the action
        best = min(range(len(pick["options"])), key=lambda i: pool_order.index(pick["options"][i]))
        assert pick["index"] == best and pick.get("sent", best) == best
        assert pick.get("applied", True)
    rankings = [d for d in ap.decisions if d.kind == "card_rank"]
    assert rankings and all(d.source == "llm" and d.ranking[0] == favourite for d in rankings)
    assert res["late_cards"] == 0 and res["card_fallbacks"] == 0


def test_ranking_ahead_beats_a_system2_too_slow_for_the_menu() -> None:
    agent = tiny_agent()
    from metabonk.envs.arena.spec import UPGRADES

    out = {}
    for ranking in (False, True):
        client = ScoringClient(UPGRADES[0], delay_s=0.05)
        ap = AsyncPlanner(Planner(client, config=PlannerConfig(samples=1)), period_s=10.0)
        # one tick of waiting: a live answer (50 ms) always misses it; a ranking made ahead does not need it
        ctrl = TwoSystemController(agent, ap, greedy=False, card_wait_ticks=1, safety=SafetyConfig.off(),
                                   card_ranking=ranking)
        out[ranking] = run_two_systems(agent, ap, episodes=1, seed=0, max_steps=600,
                                       env_overrides=ARENA_OVERRIDES, controller=ctrl)
        ap.close()
    assert out[False]["cards_system2"] == 0 and out[False]["card_fallbacks"] >= 1, out[False]
    assert out[True]["cards_system2_ranked"] >= 1, out[True]


def test_a_menu_waits_for_the_ranking_under_way_instead_of_asking_again() -> None:
    from metabonk.envs.arena.spec import UPGRADES

    agent = tiny_agent()
    client = ScoringClient(UPGRADES[1], delay_s=0.01)
    ap = AsyncPlanner(Planner(client, config=PlannerConfig(samples=1)), period_s=10.0)
    ctrl = TwoSystemController(agent, ap, greedy=False, card_wait_ticks=1000, safety=SafetyConfig.off())
    res = run_two_systems(agent, ap, episodes=1, seed=0, max_steps=600, env_overrides=ARENA_OVERRIDES,
                          controller=ctrl)
    ap.close()
    assert res["menus"] >= 3, res
    # every menu (queued level-ups too) was answered from a ranking, none by a live card request
    assert res["cards_system2_ranked"] == res["menus"] and ap.planner.counts["card_llm"] == 0, res
    assert res["card_fallbacks"] == 0 and res["late_cards"] == 0


def test_planner_intent_reaches_the_agent() -> None:
    agent = tiny_agent()
    seen: list[Any] = []
    act = agent.act

    def spy(obs: Any, hidden: Any, intent: Any = None, *args: Any, **kw: Any) -> Any:
        seen.append(intent)
        return act(obs, hidden, intent, *args, **kw)

    agent.act = spy  # type: ignore[method-assign]
    ap = AsyncPlanner(Planner(FakeClient("fight_boss"), config=PlannerConfig(samples=1)), period_s=0.2)
    # the raw path, without the safety layer (its projection would map fight_boss to kite before the first boss:
    # tests/test_intent_monitor.py checks that)
    ctrl = TwoSystemController(agent, ap, greedy=False, safety=SafetyConfig.off())
    res = run_two_systems(agent, ap, episodes=1, seed=1, max_steps=120, controller=ctrl)
    want = INTENTS.index("fight_boss")
    assert res["intents_applied"] >= 1 and res["intent_ticks"].get("fight_boss", 0) > 0
    assert seen[-1] == want and ctrl.intent == want
    first = seen.index(want)
    assert all(i == want for i in seen[first:])  # once System 2 answered, System 1 follows that intent


def test_slow_system2_never_blocks_system1() -> None:
    agent = tiny_agent()
    client = FakeClient("kite", delay_s=0.5)
    ap = AsyncPlanner(Planner(client, config=PlannerConfig(samples=1)), period_s=0.1)
    ctrl = TwoSystemController(agent, ap, greedy=False)
    res = run_two_systems(agent, ap, episodes=1, seed=0, max_steps=300, env_overrides=ARENA_OVERRIDES,
                          controller=ctrl)
    assert client.calls >= 2  # System 2 was busy (sleeping 0.5 s per call) while System 1 ran
    assert res["ticks"] == sum(res["survival"]) == 300
    assert res["tick_ms_p50"] < 50.0, res  # the whole tick, planner polling included
    assert res["tick_ms_p99"] < 250.0, res  # far below one 0.5 s System 2 call
    # menus that open while System 2 is slow are still resolved (System 2, or the policy after the wait)
    assert res["menus"] >= 1 and len(ctrl.picks) >= res["menus"] - 1
    assert all(p["applied"] for p in ctrl.picks if "applied" in p)


def test_play_agent_cli(tmp_path: Path) -> None:
    ckpt = tiny_agent().save(tmp_path / "policy")
    out = tmp_path / "play.json"
    result = CliRunner().invoke(
        app, ["play", "agent", str(ckpt), "--planner", "rule", "--max-steps", "60", "--json", str(out)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "System 2" in result.output and "intents applied" in result.output
    doc = json.loads(out.read_text())["results"]
    assert doc["ticks"] == doc["survival"][0] and doc["planner"] == "rule"


@pytest.mark.parametrize("args", [["play", "agent", "no/such/ckpt"]])
def test_play_agent_bad_checkpoint_is_one_line_error(args: list[str]) -> None:
    p = subprocess.run([sys.executable, "-c", "from metabonk.cli import main; main()", *args],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a MetaBonk checkpoint" in lines[0], p.stderr
