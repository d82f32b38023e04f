"""The Arena contract (envs/arena/spec.py): the action layout round-trips, and StateView's named fields read
back the game's own state (numpy and torch alike), so no caller needs a column offset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metabonk.common.errors import MetabonkError
from metabonk.envs.arena import ArenaGame, ScriptedExpert
from metabonk.envs.arena.config import ArenaConfig
from metabonk.envs.arena.spec import (
    ACTION_MEANINGS,
    CARD_BASE,
    MOVE_ACTIONS,
    MOVES,
    NUM_ACTIONS,
    NUM_CARDS,
    REWARD_COMPONENTS,
    STEPS,
    TICKS_PER_SECOND,
    StateView,
    card_action,
    dashes,
    direction_of,
    direction_toward,
    is_card,
    menu_open_of,
    move_action,
    reward_key,
    state_dim,
)
from metabonk.envs.arena.state import upgrade_stats


def test_action_layout_round_trips() -> None:
    assert NUM_ACTIONS == len(ACTION_MEANINGS) == 21 and MOVE_ACTIONS == CARD_BASE == 18
    seen = set()
    for d in range(len(MOVES)):
        for dash in (False, True):
            a = move_action(d, dash)
            assert direction_of(a) == d and dashes(a) == dash and not is_card(a)
            assert ACTION_MEANINGS[a].startswith(ACTION_MEANINGS[d]) and ("DASH" in ACTION_MEANINGS[a]) == dash
            seen.add(a)
    for k in range(NUM_CARDS):
        a = card_action(k)
        assert is_card(a) and direction_of(a) == 0 and not dashes(a) and ACTION_MEANINGS[a] == f"CARD{k + 1}"
        seen.add(a)
    assert seen == set(range(NUM_ACTIONS))
    for d, (x, y) in enumerate(MOVES):
        assert np.isclose(np.hypot(x, y), 1.0 if d else 0.0)
        assert direction_toward(*STEPS[d]) == d  # grid steps point the same way as the move vectors
        assert np.sign(x) == STEPS[d][0] and np.sign(y) == STEPS[d][1]
    with pytest.raises(ValueError):
        card_action(NUM_CARDS)


def _play(cfg: ArenaConfig, n: int, ticks: int) -> ArenaGame:
    """Games played by the scripted expert for `ticks` (no autoreset) so they have enemies, gems, levels,
    then 40 ticks standing still, which leaves level-up menus open (cards wait for a pick or the timeout)."""
    game = ArenaGame(cfg, n, "cpu", seed=3)
    expert = ScriptedExpert(cfg)
    for t in range(ticks + 40):
        st = game.state_vector().numpy()
        info = {"card_options": game.s["card_options"].numpy()}
        a = expert({"state": st}, info) if t < ticks else np.zeros(n, np.int64)
        game.step(torch.from_numpy(a))
    return game


def test_state_view_reads_the_game_state() -> None:
    cfg = ArenaConfig(stage_steps=600, xp_base=1.0, xp_growth=0.5)
    game = _play(cfg, 16, 300)
    s, x = game.s, game.state_vector()
    assert x.shape == (16, state_dim(cfg))
    assert s["level"].max() >= 2 and s["e_alive"].any() and s["menu_open"].any(), "a state worth reading"
    for arr in (x, x.numpy()):  # the same view over torch and numpy
        v = StateView(arr, cfg)
        np.testing.assert_allclose(np.asarray(v.position), s["pos"].numpy(), rtol=1e-5)
        np.testing.assert_allclose(np.asarray(v.level), s["level"].numpy(), rtol=1e-5)
        np.testing.assert_allclose(np.asarray(v.hp), s["hp"].numpy(), rtol=1e-4)
        np.testing.assert_allclose(np.asarray(v.max_hp), upgrade_stats(cfg, s["upg"])["max_hp"].numpy(), rtol=1e-5)
        np.testing.assert_allclose(np.asarray(v.upgrade_counts), s["upg"].numpy(), rtol=1e-5)
        np.testing.assert_allclose(np.asarray(v.time_s), s["t"].numpy() / TICKS_PER_SECOND, rtol=1e-5)
        np.testing.assert_array_equal(np.asarray(v.menu_open), s["menu_open"].numpy())
        np.testing.assert_array_equal(np.asarray(menu_open_of(arr)), s["menu_open"].numpy())
        menu = s["menu_open"].numpy()
        np.testing.assert_array_equal(np.asarray(v.cards)[menu], s["card_options"].numpy()[menu])
        np.testing.assert_array_equal(np.asarray(v.boss_alive), s["e_alive"][:, : cfg.num_bosses].any(1).numpy())
        np.testing.assert_array_equal(np.asarray(v.dash_ready), (s["dash_cd"] <= 0).numpy())

    v = StateView(x.numpy(), cfg)
    # the nearest enemies, nearest first, at the distances and offsets the game's positions give
    rel = (s["e_pos"] - s["pos"][:, None]).numpy()
    dist = np.where(s["e_alive"].numpy(), np.linalg.norm(rel, axis=-1), np.inf)
    nearest = np.sort(dist, axis=1)[:, : cfg.state_enemies]
    valid = v.enemy_valid
    np.testing.assert_array_equal(valid, np.isfinite(nearest))
    np.testing.assert_allclose(v.enemy_distance[valid], nearest[valid], rtol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(v.enemy_offset, axis=-1)[valid], nearest[valid], rtol=1e-4)
    assert (np.diff(np.where(valid, v.enemy_distance, np.inf), axis=1)[valid[:, 1:]] >= 0).all()
    gems = s["g_alive"].sum(1).numpy()
    np.testing.assert_array_equal(v.gem_valid.sum(1), np.minimum(gems, cfg.state_gems))


def test_reward_components_are_info_keys_and_sum_to_the_reward() -> None:
    game = ArenaGame(ArenaConfig(), 8, "cpu", seed=0)
    total = torch.zeros(8)
    for _ in range(200):
        reward, _, _, info = game.step(torch.randint(0, NUM_ACTIONS, (8,)))
        parts = sum(info[reward_key(c)] for c in REWARD_COMPONENTS)
        torch.testing.assert_close(parts, reward)
        total += reward
    assert total.abs().sum() > 0


def test_state_view_rejects_another_layout() -> None:
    cfg = ArenaConfig()
    with pytest.raises(MetabonkError, match="columns"):
        StateView(np.zeros((2, state_dim(cfg) + 1), np.float32), cfg)
