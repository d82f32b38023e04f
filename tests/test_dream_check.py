"""Plans checked in the dream: with a tiny world model whose reward head pays for one action and a tiny System 1
whose intents press different actions, the checker picks the intent whose dreams earn more, dreams all candidates
in one batch, cuts returns at a dreamed termination, leaves `dream()` without intents as it was, and runs on
System 2's worker inside the two-system controller without blocking System 1's tick."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from metabonk.cli import app
from metabonk.common.errors import MetabonkError
from metabonk.common.intents import INTENTS
from metabonk.planner.async_planner import AsyncPlanner
from metabonk.planner.dream_check import DreamCheckConfig, DreamChecker, discounted_returns, pick
from metabonk.planner.planner import Planner
from metabonk.planner.summary import GameSummary
from metabonk.policy.agent import Agent
from metabonk.policy.config import PolicyConfig
from metabonk.train.imagination import ImaginationActorCritic, ImaginationConfig
from metabonk.two_systems import SafetyConfig, TwoSystemController, run_two_systems
from metabonk.world.config import UNetConfig, tiny_config
from metabonk.world.dream_env import DreamEnv
from metabonk.world.world_model import WorldModel
from tests.test_policy_helpers import one_thread  # noqa: F401  (autouse fixture)

SIZE = 16
KITE, COLLECT, FIGHT, FLEE = (INTENTS.index(n) for n in ("kite", "collect_xp", "fight_boss", "flee"))
PRESS = {KITE: 1, COLLECT: 3, FIGHT: 2, FLEE: 4}  # the action each intent makes System 1 press (others: 0)


def intent_agent() -> Agent:
    """A System 1 whose actor reads only the intent embedding: intent i presses PRESS[i] (logit ~100)."""
    torch.manual_seed(0)
    cfg = PolicyConfig(image_size=SIZE, channels=(8,), feature_dim=16, hidden=8, intent_dim=8, head_hidden=8)
    agent = Agent(cfg).eval()
    with torch.no_grad():
        agent.intent_emb.weight.copy_(10 * torch.eye(cfg.num_intents, cfg.intent_dim))
        lin0, lin1 = agent.actor[0], agent.actor[2]
        lin0.weight.zero_(), lin0.bias.zero_(), lin1.weight.zero_(), lin1.bias.zero_()
        off = agent.core.out_size + cfg.feature_dim  # where the intent embedding sits in the heads' input
        for i in range(cfg.num_intents):
            lin0.weight[i, off + i] = 1.0
            lin1.weight[PRESS.get(i, 0), i] = 10.0
    return agent


def paying_world(pays: int, ends: int | None = None, num_actions: int = 18) -> WorldModel:
    """A tiny world model whose reward head pays exactly 1 for action `pays` (and `ends`, which also ends the
    episode) and 0 for every other action, whatever the frames."""
    torch.manual_seed(0)
    cfg = tiny_config(frame_size=SIZE, num_actions=num_actions, num_context=2)
    cfg.unet = UNetConfig(channels=(16, 16), depths=(1, 1), cond_channels=32, num_groups=8)
    world = WorldModel(cfg).eval()
    rm = world.reward_model
    n_img = rm.head[0].in_features - cfg.reward_hidden
    h = float(torch.nn.functional.silu(torch.tensor(5.0)))
    with torch.no_grad():
        for p in (rm.act_emb.weight, rm.head[0].weight, rm.head[0].bias, rm.head[2].weight):
            p.zero_()
        rm.head[2].bias.copy_(torch.tensor([0.0, -10.0]))  # never ends
        rm.act_emb.weight[pays, 0] = 5.0
        rm.head[0].weight[0, n_img + 0] = 1.0
        rm.head[2].weight[0, 0] = 1.0 / h  # reward = silu(5) / silu(5) = 1 for `pays`
        if ends is not None:
            rm.act_emb.weight[ends, 0] = 5.0
            rm.act_emb.weight[ends, 1] = 5.0
            rm.head[0].weight[1, n_img + 1] = 1.0
            rm.head[2].weight[1, 1] = 4.0 / h
            rm.head[2].bias[1] = -2.0  # end logit: 4 - 2 > 0 for `ends`, -2 for every other action
    return world


def context(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8), np.array([0, 0])


def test_checker_picks_the_intent_whose_dreams_earn_more() -> None:
    agent, cfg = intent_agent(), DreamCheckConfig(candidates=3, samples=3, horizon=5, gamma=0.9)
    frames, actions = context()
    full = sum(0.9**t for t in range(5))
    pays_kite = DreamChecker(paying_world(pays=PRESS[KITE]), agent, cfg).check(frames, actions,
                                                                               [COLLECT, FIGHT, KITE])
    assert pays_kite.chosen == KITE
    assert pays_kite.mean == pytest.approx([0.0, 0.0, full], abs=1e-4)
    assert pays_kite.stderr == pytest.approx([0.0, 0.0, 0.0], abs=1e-4)
    assert pays_kite.latency_s > 0 and pays_kite.samples == 3 and pays_kite.horizon == 5
    # the same candidates against a world that pays for fight_boss's action: the choice follows the reward head
    pays_fight = DreamChecker(paying_world(pays=PRESS[FIGHT]), agent, cfg).check(frames, actions,
                                                                                 [COLLECT, FIGHT, KITE])
    assert pays_fight.chosen == FIGHT and pays_fight.mean[1] == pytest.approx(full, abs=1e-4)
    # nothing pays: ties keep System 2's first candidate
    none = DreamChecker(paying_world(pays=PRESS[FLEE]), agent, cfg).check(frames, actions, [COLLECT, FIGHT, KITE])
    assert none.chosen == COLLECT and none.mean == pytest.approx([0.0] * 3, abs=1e-4)


def test_termination_cuts_the_return() -> None:
    # kite's action pays every step; flee's action pays once and ends the dream
    agent, cfg = intent_agent(), DreamCheckConfig(candidates=2, samples=2, horizon=6, gamma=0.95)
    check = DreamChecker(paying_world(pays=PRESS[KITE], ends=PRESS[FLEE]), agent, cfg).check(*context(),
                                                                                             [FLEE, KITE])
    assert check.mean == pytest.approx([1.0, sum(0.95**t for t in range(6))], abs=1e-4)
    assert check.terminated == [1.0, 0.0] and check.chosen == KITE
    r = torch.ones(1, 4)
    assert float(discounted_returns(r, torch.tensor([[0.0, 1.0, 0.0, 1.0]]), 0.5)[0]) == pytest.approx(1.5)


def test_all_candidates_dream_in_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = DreamCheckConfig(candidates=3, samples=4, horizon=7)
    checker = DreamChecker(paying_world(pays=PRESS[KITE]), intent_agent(), cfg)
    batches: list[int] = []
    step = checker.env.step

    def counting_step(actions: Any) -> Any:
        batches.append(int(torch.as_tensor(actions).numel()))
        return step(actions)

    monkeypatch.setattr(checker.env, "step", counting_step)
    checker.check(*context(), [KITE, COLLECT, FIGHT])
    assert batches == [3 * 4] * 7  # horizon steps, each stepping every candidate × sample together


def test_pick_keeps_system2_top_choice_unless_the_gain_clears_the_margin() -> None:
    assert pick([1.0, 2.0, 2.0], [0.1, 0.1, 0.1]) == 1  # the higher mean; of equals the better-ranked
    assert pick([1.0, 1.0], [0.0, 0.0]) == 0
    assert pick([1.0, 1.5], [0.2, 0.2], switch_z=2.0) == 0  # 0.5 < 2 × 0.28: not worth leaving System 2's plan
    assert pick([1.0, 1.7], [0.2, 0.2], switch_z=2.0) == 1  # 0.7 > 0.57


def test_dream_without_intents_is_unchanged() -> None:
    agent = intent_agent()
    world = paying_world(pays=PRESS[KITE])
    frames = torch.as_tensor(np.stack([context(s)[0] for s in range(4)]))
    actions = torch.zeros(4, 2, dtype=torch.long)

    def dream(intent: torch.Tensor | None) -> dict[str, torch.Tensor]:
        torch.manual_seed(7)
        ac = ImaginationActorCritic(agent, 18, ImaginationConfig(horizon=4, intent=COLLECT), DreamEnv(world, seed=3))
        return ac.dream(frames, actions) if intent is None else ac.dream(frames, actions, intent)

    default, again = dream(None), dream(None)
    explicit = dream(torch.full((4,), COLLECT))
    for key in ("obs", "actions", "rewards", "terminated", "h0", "intent"):
        assert torch.equal(default[key], again[key]) and torch.equal(default[key], explicit[key]), key
    assert (default["actions"] == PRESS[COLLECT]).all() and (default["intent"] == COLLECT).all()
    mixed = dream(torch.tensor([KITE, COLLECT, FIGHT, FLEE]))
    assert mixed["actions"][:, 0].tolist() == [PRESS[i] for i in (KITE, COLLECT, FIGHT, FLEE)]
    with pytest.raises(ValueError, match="one intent per start"):
        dream(torch.zeros(3, dtype=torch.long))


def test_intent_decisions_carry_a_ranking() -> None:
    planner = Planner(None)
    d = planner.choose_intent(GameSummary(hp=100, max_hp=100, level=1, time_s=5.0), route="rule")
    assert d.ranking[0] == d.value == "collect_xp" and sorted(d.ranking) == sorted(INTENTS)
    checked = DreamChecker(paying_world(pays=PRESS[KITE]), intent_agent(),
                           DreamCheckConfig(candidates=3, samples=1, horizon=2)).check_decision(d, *context())
    assert checked.unchecked == "collect_xp" and checked.value == "kite" and checked.index == KITE
    assert checked.dream is not None and [INTENTS[i] for i in checked.dream.candidates] == d.ranking[:3]
    assert checked.latency_s >= d.latency_s + checked.dream.latency_s - 1e-9


class ScoringClient:
    """A chat client with the embedded model's `choose`: fixed scores per intent."""

    name = "scoring"

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores

    def chat(self, *_: Any, **__: Any) -> str:
        raise AssertionError("scored decisions do not generate")

    def choose(self, messages: Any, field: str, options: list[str]) -> tuple[int, list[float]]:
        s = [self.scores.get(o, -9.0) for o in options]
        return max(range(len(options)), key=lambda i: s[i]), s


def test_llm_intent_ranking_follows_the_scores() -> None:
    planner = Planner(ScoringClient({"flee": -0.1, "heal": -0.5, "kite": -1.0}))
    d = planner.choose_intent(GameSummary(hp=100, max_hp=100, level=1, time_s=5.0), route="direct")
    assert d.source == "llm" and d.value == "flee" and d.ranking[:3] == ["flee", "heal", "kite"]


def test_controller_runs_checked_plans_on_system2_without_blocking_system1() -> None:
    agent = intent_agent()
    checker = DreamChecker(paying_world(pays=PRESS[KITE]), agent, DreamCheckConfig(candidates=3, samples=2,
                                                                                   horizon=8))
    ap = AsyncPlanner(Planner(None), period_s=0.5, deadline_s=30.0, route="rule", checker=checker)
    ctrl = TwoSystemController(agent, ap, greedy=True, safety=SafetyConfig.off(), card_ranking=False)
    res = run_two_systems(agent, ap, episodes=1, seed=0, max_steps=400, controller=ctrl,
                          env_overrides={"stage_steps": 100_000})
    assert res["ticks"] == 400 and res["dream_checks"] >= 2, res
    log = res["dream_decisions"]
    assert all(r["checked"] == "kite" for r in log)  # kite's action is the only one the reward head pays
    # the rule route says collect_xp early on (no enemy near): the check overrules it
    assert res["dream_switches"] >= 1 and any(r["unchecked"] == "collect_xp" for r in log)
    for r in log:
        assert len(r["mean"]) == len(r["stderr"]) == len(r["candidates"]) == 3
        assert r["mean"][r["candidates"].index(KITE)] == max(r["mean"]) > 0
        assert r["latency_s"] > 0 and r["decision_latency_s"] >= r["latency_s"]
    counts = res["planner_counts"]
    assert counts["dream_no_context"] == 1  # the first request came before k frames were seen
    assert counts["dream_checks"] >= res["dream_checks"] and res["intent_ticks"].get("kite", 0) > 0
    # System 1's tick never waited for a check: a check takes several times the slowest ticks
    ticks_ms = np.asarray(ctrl.tick_s) * 1e3
    assert res["dream_check_ms_p50"] > 3 * np.percentile(ticks_ms, 99), (res["dream_check_ms_p50"], ticks_ms.max())


def test_play_agent_dream_check_cli(tmp_path: Any) -> None:
    agent_ckpt = intent_agent().save(tmp_path / "policy")
    world_ckpt = paying_world(pays=PRESS[KITE]).save(tmp_path / "world")
    out = tmp_path / "play.json"
    result = CliRunner().invoke(app, ["play", "agent", str(agent_ckpt), "--max-steps", "300", "--no-safety",
                                      "--dream-check", str(world_ckpt), "--dream-horizon", "3",
                                      "--dream-samples", "2", "--json", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "dream checks" in result.output
    doc = json.loads(out.read_text())["results"]
    assert doc["dream_checks"] >= 1 and doc["dream_check"] == str(world_ckpt)


@pytest.mark.parametrize(("extra", "says"), [
    (["--dream-check", "no/such/world"], "not a MetaBonk checkpoint"),
    (["--planner", "none", "--dream-check", "W"], "needs System 2"),
    (["--dream-check", "POLICY"], "holds a 'policy' model"),
])
def test_play_agent_dream_check_errors_are_one_line(tmp_path: Any, extra: list[str], says: str) -> None:
    agent_ckpt = intent_agent().save(tmp_path / "policy")
    extra = [str(agent_ckpt) if a == "POLICY" else a for a in extra]
    result = CliRunner().invoke(app, ["play", "agent", str(agent_ckpt), "--max-steps", "5", *extra])
    assert isinstance(result.exception, MetabonkError), result.output  # main() prints it as one line
    assert says in str(result.exception) and "\n" not in str(result.exception)
