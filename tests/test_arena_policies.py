"""Baseline policies: over 32 seeds the scripted expert survives at least 3x as long as random play."""

from __future__ import annotations

import numpy as np

from metabonk.envs.arena import ArenaConfig, RandomPolicy, ScriptedExpert, make_arena_env, upgrade_index


def survival_pair(n: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """First-episode lengths of n random games and n expert games, played side by side in one batch of 2n
    (games still alive at the stage end count fully; the stage truncates them)."""
    env = make_arena_env(num_envs=2 * n, seed=seed, pixels=False)
    rand, expert = RandomPolicy(seed=seed), ScriptedExpert(env.config)
    obs, info = env.reset(seed=seed)
    lengths = np.zeros(2 * n)
    done = np.zeros(2 * n, dtype=bool)
    for _ in range(4 * env.config.stage_steps):
        actions = expert(obs, info)
        actions[:n] = rand(obs, info)[:n]
        obs, _, term, trunc, info = env.step(actions)
        new = (term | trunc) & ~done
        lengths[new] = info["episode_length"][new]
        done |= new
        if done.all():
            break
    return lengths[:n], lengths[n:]


def test_expert_survives_3x_longer_than_random_over_32_seeds() -> None:
    rand, expert = survival_pair(32)
    print(
        f"survival over 32 seeds: random {rand.mean():.0f} +- {rand.std():.0f}, expert {expert.mean():.0f} "
        f"+- {expert.std():.0f} steps (ratio {expert.mean() / rand.mean():.2f})"
    )
    assert expert.mean() >= 3.0 * rand.mean()
    assert rand.max() < 2000  # random never survives the stage
    assert (expert < 2000).any()  # and the expert does not survive trivially forever


def test_card_chooser_override_is_used() -> None:
    chosen: list[np.ndarray] = []

    def always_third(cards: np.ndarray, state: np.ndarray) -> np.ndarray:
        chosen.append(cards.copy())
        return np.full(cards.shape[0], 2)

    pol = ScriptedExpert(card_chooser=always_third)
    env = make_arena_env(num_envs=2, seed=0, pixels=False)
    obs, info = env.reset(seed=0)
    env.game.s["menu_open"][:] = True
    obs = {"state": env.game.state_vector().numpy()}
    info = {"card_options": env.game.s["card_options"].numpy()}
    assert (pol(obs, info) == 20).all() and chosen


def test_expert_prefers_strong_cards() -> None:
    cfg = ArenaConfig()
    env = make_arena_env(num_envs=1, seed=0, pixels=False)
    env.reset(seed=0)
    g = env.game
    g.s["menu_open"][:] = True
    g.s["card_options"][0] = __import__("torch").tensor(
        [upgrade_index("luck"), upgrade_index("projectile_count"), upgrade_index("xp_gain")]
    )
    a = ScriptedExpert(cfg)(
        {"state": g.state_vector().numpy()}, {"card_options": g.s["card_options"].numpy()}
    )
    assert int(a[0]) == 19
