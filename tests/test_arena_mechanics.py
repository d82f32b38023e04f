"""Arena mechanics, each checked by setting up a situation in the batched state and stepping it."""

from __future__ import annotations

import itertools

import torch

from metabonk.envs.arena import UPGRADES, ArenaConfig, ArenaGame, upgrade_index

NOOP = torch.zeros(1, dtype=torch.long)


def _game(**kw: object) -> ArenaGame:
    # No regular spawns unless a test asks for them, so each test controls every entity.
    base = {"spawn_rate_start": 0.0, "spawn_rate_end": 0.0}
    base.update(kw)
    return ArenaGame(ArenaConfig().replace(**base), num_envs=1, seed=0)


def _place_enemy(g: ArenaGame, slot: int, dx: float, dy: float, hp: float = 5.0, elite: bool = False) -> None:
    g.s["e_pos"][0, slot] = g.s["pos"][0] + torch.tensor([dx, dy])
    g.s["e_alive"][0, slot] = True
    g.s["e_hp"][0, slot] = hp
    g.s["e_maxhp"][0, slot] = hp
    g.s["e_elite"][0, slot] = elite


def test_contact_damage_reduces_hp_and_dash_avoids_it() -> None:
    g = _game(fire_range=0.0, aura_damage=0.0)
    _place_enemy(g, 5, 0.2, 0.0)
    hp0 = float(g.s["hp"][0])
    _, term, _, info = g.step(NOOP)
    assert float(info["damage_taken"][0]) > 0
    assert float(g.s["hp"][0]) < hp0 - 0.3  # regen is far smaller than contact damage
    assert float(info["r_damage"][0]) < 0 and not bool(term[0])
    g2 = _game(fire_range=0.0, aura_damage=0.0)
    _place_enemy(g2, 5, 0.2, 0.0)
    _, _, _, info2 = g2.step(torch.tensor([9]))  # stand + dash: invulnerable while dashing
    assert float(info2["damage_taken"][0]) == 0.0
    assert int(info2["dashed"][0]) == 1


def test_kills_drop_xp_gems_where_the_enemy_died() -> None:
    g = _game(magnet_radius=0.0, pickup_radius=0.0)
    _place_enemy(g, 7, 4.0, 0.0, hp=0.5)
    kills, gem_pos = 0, None
    for _ in range(20):
        _, _, _, info = g.step(NOOP)
        kills += int(info["kills"][0])
        if kills:
            gem_pos = g.s["g_pos"][0][g.s["g_alive"][0]]
            break
    assert kills == 1 and not bool(g.s["e_alive"][0, 7])
    assert gem_pos is not None and gem_pos.shape[0] == 1
    assert float(g.s["g_val"][0][g.s["g_alive"][0]][0]) == 1.0
    assert torch.linalg.norm(gem_pos[0] - g.s["pos"][0]) > 2.0  # dropped out there, not at the player
    assert float(info["r_kill"][0]) > 0


def test_xp_pickup_levels_up_menu_pauses_and_card_changes_stat() -> None:
    g = _game()
    g.s["xp"][0] = g.s["xp_next"][0] - 0.5
    g.s["g_pos"][0, 0] = g.s["pos"][0]
    g.s["g_alive"][0, 0] = True
    g.s["g_val"][0, 0] = 1.0
    g.s["g_life"][0, 0] = 100.0
    _, _, _, info = g.step(NOOP)
    assert int(info["level_ups"][0]) == 1 and bool(info["menu_open"][0])
    opts = info["card_options"][0].tolist()
    assert len(set(opts)) == 3 and all(0 <= o < len(UPGRADES) for o in opts)
    # The world is paused while the menu is open: moves do nothing, the clock stands still.
    _place_enemy(g, 9, 6.0, 0.0)
    pos, epos, t = g.s["pos"].clone(), g.s["e_pos"].clone(), float(g.s["t"][0])
    g.step(torch.tensor([1]))
    assert torch.equal(pos, g.s["pos"]) and torch.equal(epos, g.s["e_pos"]) and float(g.s["t"][0]) == t
    # Force a known card in slot 1 and pick it: the damage stat goes up.
    g.s["card_options"][0] = torch.tensor(
        [upgrade_index("luck"), upgrade_index("damage"), upgrade_index("regen")]
    )
    dmg0 = float(g.stats["damage"][0])
    _, _, _, info = g.step(torch.tensor([19]))
    assert int(info["card_picked"][0]) == upgrade_index("damage")
    assert not bool(g.s["menu_open"][0]) and float(g.stats["damage"][0]) > dmg0


def test_menu_timeout_picks_first_card() -> None:
    g = _game(menu_timeout_steps=5)
    g.s["menu_open"][0] = True
    g.s["card_options"][0] = torch.tensor([upgrade_index("max_hp"), 0, 1])
    hp0 = float(g.s["hp"][0])
    for _ in range(5):
        g.step(NOOP)
    assert not bool(g.s["menu_open"][0])
    assert float(g.stats["max_hp"][0]) > 100.0 and float(g.s["hp"][0]) > hp0


def test_upgrades_have_diminishing_returns() -> None:
    g = _game()
    vals = []
    for k in range(4):
        g.s["upg"][0, upgrade_index("move_speed")] = k
        vals.append(float(g.stats["speed"][0]))
    gains = [b - a for a, b in itertools.pairwise(vals)]
    assert all(x > 0 for x in gains) and gains[0] > gains[1] > gains[2]


def test_bosses_spawn_on_schedule() -> None:
    cfg = {"stage_steps": 200, "boss_times": (0.2, 0.7), "player_max_hp": 1e6, "boss_damage": 0.0}
    g = _game(**cfg)
    spawned_at = []
    for _ in range(400):
        if float(g.s["t"][0]) >= 200:
            break
        _, _, _, info = g.step(NOOP)
        if int(info["boss_spawned"][0]):
            spawned_at.append(int(g.s["t"][0]))
        if bool(g.s["menu_open"][0]):
            g.step(torch.tensor([18]))
    assert spawned_at == [40, 140]


def test_stage_timer_truncates_and_death_terminates() -> None:
    g = _game(stage_steps=30)
    for i in range(30):
        _, term, trunc, _ = g.step(NOOP)
        assert bool(trunc[0]) == (i == 29) and not bool(term[0])
    g = _game(enemy_damage=200.0, fire_range=0.0, aura_damage=0.0)
    _place_enemy(g, 5, 0.1, 0.0)
    _, term, trunc, _ = g.step(NOOP)
    assert bool(term[0]) and not bool(trunc[0]) and float(g.s["hp"][0]) <= 0
    # A finished game is frozen until reset_done.
    t = float(g.s["t"][0])
    g.step(NOOP)
    assert float(g.s["t"][0]) == t
    g.reset_done(torch.tensor([True]))
    assert float(g.s["hp"][0]) == 100.0 and not bool(g.s["done"][0])


def test_waves_scale_with_time() -> None:
    g = ArenaGame(ArenaConfig().replace(player_max_hp=1e9, stage_steps=1000), num_envs=16, seed=1)
    early = late = 0
    gen = torch.Generator().manual_seed(0)
    for t in range(1000):
        a = torch.randint(0, 21, (16,), generator=gen)
        g.step(a)
        alive = int(g.s["e_alive"].sum())
        if t < 100:
            early += alive
        elif t >= 900:
            late += alive
    assert late > 3 * early
    assert bool(g.s["e_elite"].any())


def test_same_seed_same_trajectory_pixels_too() -> None:
    def run(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        g = ArenaGame(ArenaConfig(), num_envs=4, seed=seed)
        gen = torch.Generator().manual_seed(123)
        rewards, frames = [], []
        for t in range(120):
            r, term, trunc, _ = g.step(torch.randint(0, 21, (4,), generator=gen))
            g.reset_done(term | trunc)
            rewards.append(r)
            if t % 20 == 0:
                frames.append(g.render())
        return torch.stack(rewards), torch.stack(frames), g.state_vector()

    a, b, c = run(7), run(7), run(8)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    assert not torch.equal(a[1], c[1])


def test_cuda_code_paths_match_cpu_paths() -> None:
    """The GPU formulations (dense collisions, dense masked sprite stamping) give the same game on CPU."""

    def run(dense: bool) -> tuple[torch.Tensor, torch.Tensor]:
        g = ArenaGame(ArenaConfig(), num_envs=32, seed=5)
        g.dense_collisions = dense
        gen = torch.Generator().manual_seed(9)
        frames = []
        for t in range(300):
            _, term, trunc, _ = g.step(torch.randint(0, 21, (32,), generator=gen))
            g.reset_done(term | trunc)
            if t % 60 == 59:
                g.render()
                g._renderer.compact = not dense
                frames.append(g.render())
        return torch.stack(frames), g.state_vector()

    (fa, sa), (fb, sb) = run(False), run(True)
    assert torch.equal(fa, fb)
    assert torch.allclose(sa, sb)
