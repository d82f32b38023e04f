"""Hive parts without Ray: reward profiles, niches, the DungeonMaster's schema, routes and real-rollout
verdicts, the dream hooks, and CfC time constants."""

from __future__ import annotations

import jsonschema
import numpy as np
import pytest
import torch

from metabonk.common.errors import MetabonkError
from metabonk.envs.arena import make_arena_env
from metabonk.hive.dungeon_master import (
    dream_verdict,
    llm_proposals,
    proposal_schema,
    real_rollout_verdict,
    rule_proposals,
)
from metabonk.hive.federated import HiveConfig, initial_policy
from metabonk.hive.niches import Niche, default_niche
from metabonk.hive.profiles import ProfileReward, profile_weights
from metabonk.hive.specialist import TrainBudget, get_trainer
from metabonk.hive.tau import tau_divergence, time_constants
from metabonk.hive.transport import agent_from


def test_profile_reward_is_the_weighted_components() -> None:
    env = ProfileReward(make_arena_env(4, size=16, seed=0, stage_steps=50), profile_weights("tank"))
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(30):
        _, reward, _, _, info = env.step(rng.integers(0, 18, 4))
        assert np.allclose(reward, info["r_survive"] + 3.0 * info["r_damage"])
    env.close()


def test_niches_reject_bad_input() -> None:
    with pytest.raises(MetabonkError, match="unknown specialist"):
        default_niche("healer")
    with pytest.raises(MetabonkError, match="unknown arena option"):
        Niche("x", "arena", "killer", {"enemy_sped": 0.2})
    with pytest.raises(MetabonkError, match="dream loop"):
        Niche("x", "dream")
    with pytest.raises(MetabonkError, match="unknown reward profile"):
        Niche("x", "arena", "healer")
    n = default_niche("killer")
    assert Niche.from_dict(n.to_dict()) == n


class FixedReply:
    """A chat client that always answers `text` (stands in for an LLM endpoint)."""

    name = "fixed"

    def __init__(self, text: str) -> None:
        self.text = text

    def chat(self, messages: list[dict[str, str]], **kw: object) -> str:
        return self.text


def test_dungeon_master_routes_follow_the_schema() -> None:
    niches = {s: default_niche(s) for s in ("killer", "tank", "survivor")}
    scores = {
        "killer": {"mean": 1.0, "causes": {"survived": 9, "swarm": 1}},
        "tank": {"mean": 1.0, "causes": {"boss": 6, "swarm": 2}},
        "survivor": {"mean": 1.0, "causes": {"swarm": 7, "survived": 1}},
    }
    props = {p.niche: p for p in rule_proposals(scores, niches)}
    schema = proposal_schema(sorted(niches))
    jsonschema.validate({"proposals": [{"niche": p.niche, "changes": p.changes, "reason": p.reason}
                                       for p in props.values()]}, schema)
    assert props["killer"].changes["spawn_rate_end"] > niches["killer"].arena_config().spawn_rate_end
    assert props["tank"].changes["boss_times"][0] < niches["tank"].arena_config().boss_times[0]
    assert props["survivor"].changes["spawn_rate_start"] > niches["survivor"].arena_config().spawn_rate_start
    good = '{"proposals": [{"niche": "tank", "changes": {"enemy_speed": 0.2}, "reason": "faster"}]}'
    out, fallbacks = llm_proposals(FixedReply(good), scores, niches)
    assert fallbacks == 0 and out[0].route == "llm" and out[0].changes == {"enemy_speed": 0.2}
    out_of_range = '{"proposals": [{"niche": "tank", "changes": {"enemy_speed": 9}, "reason": "x"}]}'
    out, fallbacks = llm_proposals(FixedReply(out_of_range), scores, niches)
    assert fallbacks == 1 and {p.route for p in out} == {"rule-fallback"}


def test_real_rollout_verdicts() -> None:
    trivial = Niche("t", "arena", "survivor", {"stage_steps": 30})
    assert real_rollout_verdict(trivial, 4, 0).verdict == "trivial"
    deadly = Niche("d", "arena", "survivor", {
        "stage_steps": 300, "enemy_damage": 1000.0, "enemy_speed": 0.5, "spawn_rate_start": 1.0,
        "spawn_rate_end": 1.0, "max_spawn_per_tick": 4, "arena_size": 20.0, "spawn_min_distance": 1.0,
    })  # the expert measured 0.09 of the stage
    v = real_rollout_verdict(deadly, 4, 0)
    assert v.verdict == "impossible" and v.expert_survival < 0.2
    fair = default_niche("killer")
    assert real_rollout_verdict(fair, 4, 0).verdict == "accepted"
    with pytest.raises(MetabonkError, match="issue 17"):
        dream_verdict(fair, 4, 0)


def test_dream_trainer_fine_tunes_in_the_online_loop() -> None:
    with pytest.raises(MetabonkError, match="pixel niches"):
        get_trainer("dream")({}, b"", default_niche("left"), TrainBudget(), 0)
    with pytest.raises(MetabonkError, match="unknown specialist trainer"):
        get_trainer("bc")
    niche = default_niche("killer")
    pconf, start = initial_policy(HiveConfig(specialists=["killer", "scout"]), niche)
    data, metrics = get_trainer("dream")(pconf, start, niche, TrainBudget(total_steps=64, num_envs=4), 0)
    assert metrics["trainer"] == "dream" and metrics["env_steps"] >= 64 and metrics["epochs"] == 2
    before, after = agent_from(pconf, start).state_dict(), agent_from(pconf, data).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the loop's imagination updates moved it


def test_time_constants_of_a_cfc_policy() -> None:
    niche = default_niche("left")
    pconf, data = initial_policy(HiveConfig(specialists=["left", "right"]), niche)
    agent = agent_from(pconf, data)
    tau = time_constants(agent, niche, 4, 0)
    assert tau is not None and tau["units"] == 16 and all(t > 0 for t in tau["tau_ticks"])
    with torch.no_grad():
        agent.core.rnn.rnn_cell.time_a.weight.mul_(10.0)
        agent.core.rnn.rnn_cell.time_a.bias.mul_(10.0)
    faster = time_constants(agent, niche, 4, 0)
    assert faster is not None and faster["median_ticks"] < tau["median_ticks"]
    assert tau_divergence(tau["tau_ticks"], faster["tau_ticks"]) > 0.5
    assert tau_divergence(tau["tau_ticks"], tau["tau_ticks"]) == 0.0


def test_hive_run_bad_input_is_one_line_before_ray_starts() -> None:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "metabonk", "hive", "run", "--trainer", "dream", "--specialists",
                        "left,right"], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "Traceback" not in r.stderr and "pixel niches" in r.stderr, r.stderr
    assert "Started a local Ray" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "metabonk", "hive", "run", "--specialists", "left,right", "--scales",
                        "1,big"], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "Traceback" not in r.stderr and "--scales takes" in r.stderr, r.stderr
    for kw in ({"specialists": ["killer", "healer"]}, {"specialists": ["killer"]}, {"methods": ["ties"]},
               {"dm_validate": "dream"}):
        with pytest.raises(MetabonkError):
            HiveConfig(**kw)  # type: ignore[arg-type]
