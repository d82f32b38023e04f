"""The scripted ALE experts: their RAM addresses match the rendered frame, they are registered as the
'scripted' policy, the Pong tracker presses toward the ball it reads, the disturbed expert's bursts are its own
actions at the set rate, and the experts beat random play by a margin over short, fixed-seed stretches."""

from __future__ import annotations

import numpy as np
import pytest

from metabonk.common.errors import MetabonkError
from metabonk.envs import make_env
from metabonk.envs.ale_experts import (
    BREAKOUT_BALL_X,
    BREAKOUT_PADDLE_X,
    PONG_BALL_X,
    PONG_BALL_Y,
    PONG_PADDLE_Y,
    Disturbed,
    PongExpert,
    PongTracker,
    ale_expert,
)
from metabonk.envs.policies import get_policy, has_scripted


def _rows(frame: np.ndarray, colour: tuple[int, int, int], rows: slice, cols: slice) -> np.ndarray:
    hit = np.all(frame[rows, cols] == colour, axis=-1)
    return np.flatnonzero(hit.any(1)) + (rows.start or 0), np.flatnonzero(hit.any(0)) + (cols.start or 0)


def test_ram_addresses_match_the_screen() -> None:
    from ale_py.env import AtariEnv

    rng = np.random.default_rng(0)
    env = AtariEnv(game="pong", obs_type="rgb", frameskip=4, repeat_action_probability=0.0)
    env.reset(seed=0)
    checked = 0
    for _ in range(120):
        frame, *_ = env.step(int(rng.integers(0, env.action_space.n)))
        ram = env.ale.getRAM().astype(int)
        ys, _ = _rows(frame, (92, 186, 92), slice(34, 194), slice(136, 148))  # the green (player) paddle
        by, _ = _rows(frame, (236, 236, 236), slice(34, 194), slice(0, 160))  # the ball
        if len(ys) == 16:  # fully on screen
            assert abs(ys[0] - (ram[PONG_PADDLE_Y] - 14)) <= 1  # the screen lags the RAM by ≤ 1 px
            checked += 1
        if len(by) == 4:
            assert abs(by[0] - (ram[PONG_BALL_Y] - 14)) <= 1
    env = AtariEnv(game="breakout", obs_type="rgb", frameskip=4, repeat_action_probability=0.0)
    env.reset(seed=0)
    for t in range(120):
        frame, *_ = env.step(1 if t % 40 == 0 else int(rng.integers(0, env.action_space.n)))
        ram = env.ale.getRAM().astype(int)
        _, xs = _rows(frame, (200, 72, 72), slice(189, 193), slice(8, 152))  # the paddle row
        if len(xs) == 16:
            assert abs(xs[0] - (ram[BREAKOUT_PADDLE_X] - 47)) <= 1
            checked += 1
        _, bx = _rows(frame, (200, 72, 72), slice(100, 185), slice(8, 152))  # the ball, below the bricks
        if len(bx) == 2:
            assert abs(bx[0] - (ram[BREAKOUT_BALL_X] - 49)) <= 1
    assert checked > 50


def test_registered_as_scripted_policy() -> None:
    assert has_scripted("ale:Pong") and has_scripted("ale:Breakout") and not has_scripted("ale:Tetris")
    env = make_env("ale:Breakout", num_envs=2, size=16)
    obs, info = env.reset(seed=0)
    a = get_policy("ale:Breakout", "scripted", env)(obs, info)
    assert a.dtype == np.int64 and a.shape == (2,)
    assert (a == env.action_meanings.index("FIRE")).all()  # no ball in play yet: serve
    with pytest.raises(MetabonkError, match="no scripted policy"):
        get_policy("ale:Tetris", "scripted", env)
    with pytest.raises(MetabonkError, match="no scripted expert"):
        ale_expert("ale:Tetris", env.action_meanings)


def _pong_ram(ball_x: float, ball_y: float, paddle_y: float) -> dict[str, np.ndarray]:
    """An obs whose `state` is a Pong RAM with the ball and the right paddle where given (RAM units)."""
    ram = np.zeros((1, 128))
    ram[0, [PONG_BALL_X, PONG_BALL_Y, PONG_PADDLE_Y]] = ball_x, ball_y, paddle_y
    return {"state": (ram / 255.0).astype(np.float32)}


def test_pong_tracker_presses_toward_the_ball_it_reads() -> None:
    meanings = ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]  # RIGHT moves Pong's paddle up
    noop, up, down = 0, 2, 3

    def act(ball_x: float, ball_y: float, paddle_y: float) -> int:
        tracker = PongTracker(meanings)  # fresh: no paddle or ball motion yet, so its rest point is where it is
        return int(tracker(_pong_ram(ball_x, ball_y, paddle_y))[0])

    # the paddle's centre is level with the ball when ram[54] = ram[51] + 6; the deadband is 6 RAM units
    assert act(100, 80, 120) == up and act(100, 180, 120) == down
    assert act(100, 126, 120) == noop and act(100, 130, 120) == noop
    assert act(0, 0, 40) == down and act(0, 0, 190) == up  # no ball in play: back to the centre (126.5)
    # motion read from two frames: pressed down and gliding 20 units a step, the paddle (centre 126) would come
    # to rest ~16 lower, at the ball's height (140): stop pressing
    tracker = PongTracker(meanings)
    assert int(tracker(_pong_ram(100, 140, 100))[0]) == down
    assert int(tracker(_pong_ram(100, 140, 120))[0]) == noop
    # the ball's height one step ahead: 4 above the paddle's centre and rising 8 a step, it will be 12 above:
    # press up (on its height now it would not)
    tracker = PongTracker(meanings)
    assert int(tracker(_pong_ram(100, 130, 120))[0]) == noop
    assert int(tracker(_pong_ram(104, 122, 120))[0]) == up


def test_disturbed_expert_bursts_are_its_own_actions_at_the_set_rate() -> None:
    env = make_env("ale:Pong", num_envs=4, size=16, seed=0)
    obs, info = env.reset(seed=0)
    clean = PongTracker(env.action_meanings)
    noisy = Disturbed(PongTracker(env.action_meanings), rate=0.1, burst=(1, 3), seed=0)
    differ = steps = 0
    for _ in range(300):
        a, b = clean(obs, info), noisy(obs, info)
        assert set(b.tolist()) <= set(clean.actions)
        differ += int((a != b).sum())
        steps += a.size
        obs, _, _, _, info = env.step(a)
    env.close()
    # bursts start at rate 0.1 on free steps and last 2 steps on average: ~17 % of steps forced, 2/3 of those
    # to an action other than the expert's
    assert 0.05 < differ / steps < 0.2
    assert isinstance(ale_expert("ale:Pong", env.action_meanings, disturb=0.03), Disturbed)
    assert isinstance(ale_expert("ale:Pong", env.action_meanings), PongTracker)
    with pytest.raises(MetabonkError, match="ALE games only"):
        get_policy("arena", "disturbed", env)


def _play(spec: str, policy: str, num_envs: int, steps: int, planner: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(points won, points lost) per env over `steps` steps from seed 0 (default sticky actions 0.25); `planner`
    plays Pong's PongExpert instead of `policy`."""
    env = make_env(spec, num_envs=num_envs, size=16, seed=0)
    act = PongExpert(env.action_meanings) if planner else get_policy(spec, policy, env, seed=0)
    obs, info = env.reset(seed=0)
    won, lost = np.zeros(num_envs), np.zeros(num_envs)
    for _ in range(steps):
        obs, r, _, _, info = env.step(act(obs, info))
        won += np.clip(r, 0, None)
        lost += np.clip(-r, 0, None)
    env.close()
    return won, lost


def test_pong_experts_beat_random() -> None:
    # measured on these seeds (ALE is deterministic given the seed): the tracker won 0 and lost 0 (long rallies),
    # the planner won 1 and lost 0, random lost 15
    r_won, r_lost = _play("ale:Pong", "random", 2, 400)
    assert r_lost.sum() >= 6
    for planner in (False, True):
        e_won, e_lost = _play("ale:Pong", "scripted", 2, 400, planner=planner)
        assert e_lost.sum() <= 2
        assert (e_won - e_lost).sum() >= (r_won - r_lost).sum() + 6


def test_breakout_expert_beats_random() -> None:
    # measured on these seeds: the expert scored 14 (8 + 6, no life lost), random 4 (1 + 3)
    e_won, _ = _play("ale:Breakout", "scripted", 2, 300)
    r_won, _ = _play("ale:Breakout", "random", 2, 300)
    assert e_won.sum() >= r_won.sum() + 6
