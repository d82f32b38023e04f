"""The intent expert: its schedule, its intent-labelled demos, and behavioural signatures that separate in Arena."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metabonk.common.intents import INTENTS, intent_id
from metabonk.envs import make_env
from metabonk.envs.arena.intent_expert import IntentExpert, IntentSchedule
from metabonk.envs.arena.spec import TICKS_PER_SECOND
from metabonk.policy.intent_signatures import (
    FEATURES,
    SIGNATURES,
    ExpertIntentController,
    IntentClassifier,
    classifier_figures,
    rollout_segments,
    summarize_signatures,
)


def test_schedule_switches_within_bounds_and_never_repeats() -> None:
    sched = IntentSchedule(num_envs=5, seed=3, min_s=1.0, max_s=2.0)
    trace = np.stack([sched.step() for _ in range(20 * TICKS_PER_SECOND)])  # [T, N]
    for g in range(trace.shape[1]):
        change = np.flatnonzero(np.diff(trace[:, g]) != 0)
        runs = np.diff(change)
        assert len(change) >= 8
        assert runs.min() >= TICKS_PER_SECOND and runs.max() <= 2 * TICKS_PER_SECOND + 1
        assert (trace[change + 1, g] != trace[change, g]).all()
    assert set(np.unique(trace)) == set(range(len(INTENTS)))


def test_intents_change_the_experts_moves() -> None:
    env = make_env("arena", num_envs=8, seed=1, pixels=False)
    obs, info = env.reset(seed=1)
    expert = IntentExpert(env.config)
    for _ in range(300):  # into the game, enemies around
        obs, *_, info = env.step(expert(obs, info, np.full(8, intent_id("kite"))))
    acts = np.stack([IntentExpert(env.config)(obs, info, np.full(8, i)) for i in range(len(INTENTS))])
    differs = (acts[:, None, :] != acts[None, :, :]).any(-1)  # [I, I] some game moves differently
    assert differs[~np.eye(len(INTENTS), dtype=bool)].mean() > 0.8


def test_recorded_demos_store_the_commanded_intent(tmp_path) -> None:
    from metabonk.data.record import record_episodes
    from metabonk.data.store import EpisodeStore

    record_episodes("arena", tmp_path / "demos", 2, policy="intents", num_envs=2, size=32, seed=0, max_steps=400,
                    show_progress=False)
    store = EpisodeStore.open(tmp_path / "demos")
    ep = store.episode(0, ["intent", "action", "reward"])
    assert ep["intent"].dtype == np.int64 and ep["intent"].shape == ep["action"].shape
    assert len(np.unique(ep["intent"])) >= 2  # the schedule switches within one episode
    assert store.info["meta"]["intents"] == list(INTENTS)


def test_bc_batch_conditions_on_the_stored_intent() -> None:
    from metabonk.policy.agent import Agent
    from metabonk.policy.bc import bc_batch, imitation_loss
    from metabonk.policy.config import PolicyConfig

    torch.manual_seed(0)
    agent = Agent(PolicyConfig(image_size=48, channels=(8, 8, 8), feature_dim=16, hidden=16, head_hidden=16))
    with torch.no_grad():
        agent.reflex.normal_(0, 1.0)  # heads that depend on the intent
    raw = {"obs": torch.randint(0, 255, (2, 5, 48, 48, 3), dtype=torch.uint8), "action": torch.zeros(2, 4).long()}
    losses = []
    for it in (0, 3):
        batch = bc_batch({**raw, "intent": torch.full((2, 4), it)}, "action", True)
        losses.append(float(imitation_loss(agent, batch)[0].detach()))
    assert batch["intent"].shape == (2, 4) and losses[0] != losses[1]


def test_classifier_round_trips(tmp_path) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, len(INTENTS), 300)
    x = rng.normal(size=(300, len(FEATURES))) + np.eye(len(INTENTS), len(FEATURES))[y] * 3
    clf = IntentClassifier().fit(x[:200], y[:200])
    assert (clf.predict(x[200:]) == y[200:]).mean() > 0.8
    clf.save(tmp_path / "clf")
    assert (IntentClassifier.load(tmp_path / "clf").predict(x) == clf.predict(x)).all()


@pytest.fixture(scope="module")
def expert_segments():
    test = rollout_segments(ExpertIntentController(seed=0), 24, seed=0, pixels=False)
    train = rollout_segments(ExpertIntentController(seed=1), 24, seed=10_000, pixels=False)
    return test, train


def test_expert_signatures_separate(expert_segments) -> None:
    """Each intent but heal pushes its own signature above the other intents' average, fight_boss far above.
    Margins over 8 seed offsets of this fixture (METABONK_TEST_SEED 0-7, 24 games each, 2026-12-03): own /
    others' mean kite 1.65-2.06, collect_xp 1.39-2.29, fight_boss 2.12-18.44, flee 1.07-1.51, explore
    1.15-1.33, heal 0.56-1.91 (heal's HP regained is the weak signature, docs/intents.md: not asserted); own
    lower 95 % bound above the others' mean on 4-5 of the 6 signatures. (The 95 % intervals of fight_boss or
    explore were apart at 5 of the 8 offsets only: not asserted.)"""
    test, _ = expert_segments
    sig = summarize_signatures(test)
    for owner, v in sig.items():
        if owner == "heal":
            continue
        by = v["by_intent"]
        others = np.mean([by[n]["mean"] for n in INTENTS if n != owner])
        assert by[owner]["mean"] > others, (owner, v["signature"], by)
    by = sig["fight_boss"]["by_intent"]
    assert by["fight_boss"]["mean"] > 1.5 * np.mean([by[n]["mean"] for n in INTENTS if n != "fight_boss"]), by
    lifted = sum(sig[o]["by_intent"][o]["ci95"][0] > np.mean([sig[o]["by_intent"][n]["mean"] for n in INTENTS
                                                              if n != o]) for o in SIGNATURES)
    assert lifted >= 4  # own lower bound above the others' mean on most signatures


def test_classifier_recovers_the_experts_intent_on_held_out_seeds(expert_segments) -> None:
    test, train = expert_segments
    fig = classifier_figures(train, test)
    assert fig["accuracy"] >= 0.6, fig  # chance is 1/6; 0.72-0.84 at 48 games (docs/intents.md)


@pytest.mark.parametrize(("args", "words"), [
    (["bench", "intents", "--episodes", "1"], "must be ≥ 2"),
    (["bench", "intents", "/nonexistent-policy"], "not a MetaBonk checkpoint"),
    (["record", "ale:Pong", "--policy", "intents", "--out", "/tmp/never-written-intents"], "Arena only"),
])
def test_intent_verbs_refuse_bad_input_in_one_line(args: list[str], words: str) -> None:
    from tests.hardening_helpers import assert_one_line_error, run_cli

    code, text = run_cli(args)
    assert_one_line_error(code, text, words)
