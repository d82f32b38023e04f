"""The 'arena-hard' configuration: selectable by name everywhere an env name is taken, and (slow test, 32
seeds) harder for the scripted expert than the default stage: it dies at a smaller fraction of a longer stage."""

from __future__ import annotations

import numpy as np
import pytest

from metabonk.common.errors import MetabonkError
from metabonk.envs import ARENA_CONFIGS, make_env
from metabonk.envs.arena.config import NAMED_CONFIGS, ArenaConfig, named_config, named_config_overrides
from metabonk.envs.policies import get_policy, has_scripted


def test_named_configs_are_registered_and_steeper() -> None:
    assert set(ARENA_CONFIGS) == set(NAMED_CONFIGS)
    base, hard = ArenaConfig(), named_config("arena-hard")
    assert hard.stage_steps > base.stage_steps
    assert hard.spawn_rate_end > base.spawn_rate_end
    assert hard.enemy_hp_growth > base.enemy_hp_growth
    assert named_config("arena-hard", stage_steps=10).stage_steps == 10
    env = make_env("arena-hard", num_envs=2, size=16, pixels=False, max_enemies=12)
    assert env.config.stage_steps == hard.stage_steps and env.config.max_enemies == 12  # overrides still apply
    assert has_scripted("arena-hard")
    with pytest.raises(MetabonkError, match="unknown arena configuration"):
        named_config_overrides("arena-easy")
    with pytest.raises(MetabonkError, match="unknown env spec"):
        make_env("arena-easy")


def _expert_survival(spec: str, seeds: int) -> tuple[np.ndarray, int]:
    """Ticks each seed's first episode lasted under the scripted expert, and the stage length."""
    env = make_env(spec, num_envs=seeds, size=16, seed=0, pixels=False)
    act = get_policy(spec, "scripted", env)
    obs, info = env.reset(seed=0)
    lengths = np.zeros(seeds, np.int64)
    over = np.zeros(seeds, bool)
    for _ in range(3 * env.config.stage_steps):
        obs, _, term, trunc, info = env.step(act(obs, info))
        new = (term | trunc) & ~over
        lengths[new] = info["episode_length"][new]
        over |= term | trunc
        if over.all():
            break
    return lengths, env.config.stage_steps


@pytest.mark.slow
def test_expert_dies_earlier_in_the_stage_on_hard() -> None:
    # The seeds of one batch share the game's generator, so a batch of 4 says little (measured: the expert's
    # median ranged 39-85 % of the stage over batches of 4); this is the 32-seed figure of
    # `metabonk bench baselines --env arena[-hard]` (eval-expert-arena*.json), ~2 min on an idle core.
    base, base_stage = _expert_survival("arena", 32)
    hard, hard_stage = _expert_survival("arena-hard", 32)
    assert np.median(hard / hard_stage) < 0.65
    assert np.median(hard / hard_stage) < np.median(base / base_stage) - 0.1
