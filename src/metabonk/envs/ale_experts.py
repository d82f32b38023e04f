"""Scripted experts for ALE Pong and Breakout: read ball and paddle from the RAM (the env's `state` is
RAM / 255) and track the ball: Pong's `PongTracker` (the 'scripted' policy) follows the ball's height, the
`PongExpert` planner and `BreakoutExpert` move the paddle to where the ball will cross the paddle's line;
`Disturbed` breaks any of them with short random bursts (video for behaviour cloning, the 'disturbed' policy).

The RAM addresses were checked against rendered frames (210×160 ALE screen, frameskip 4) by locating the
objects' colours and fitting frame coordinate = RAM byte + offset; the fits were exact to a pixel:
- Pong: player (right, green) paddle top y = ram[51] - 14 (16 px tall); ball top y = ram[54] - 14 (4 px),
  ball left x = ram[49] - 49; ram[49] == 0 while no ball is served.
- Breakout: paddle left x = ram[72] - 47 (16 px wide); ball left x = ram[99] - 49, top y = ram[101] + 9;
  ram[101] == 0 while no ball is in play (FIRE serves one).
Hand-written because no library ships Atari experts; they are a baseline and a source of expert video.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from metabonk.common.errors import MetabonkError

PONG_PADDLE_Y, PONG_BALL_X, PONG_BALL_Y = 51, 49, 54
BREAKOUT_PADDLE_X, BREAKOUT_BALL_X, BREAKOUT_BALL_Y = 72, 99, 101

# Pong, in RAM units: the paddle's centre is level with the ball's centre when ram[54] = ram[51] + 6;
# the player's paddle face sits at ball x ≈ 188; the ball's centre bounces between y ≈ 48.5 and 204.5.
_PONG_ALIGN, _PONG_PADDLE_LINE, _PONG_TOP, _PONG_BOTTOM = 6.0, 187.0, 48.5, 204.5
# Breakout, in RAM units: the paddle's centre lies under the ball's centre when ram[99] = ram[72] + 9;
# the paddle's top is at ball y ≈ 178; the ball's x bounces between the side walls at ≈ 57 and 200.
_BREAKOUT_ALIGN, _BREAKOUT_PADDLE_LINE, _BREAKOUT_LEFT, _BREAKOUT_RIGHT = 9.0, 178.0, 57.5, 199.5


def _ram(obs: dict[str, Any]) -> np.ndarray:
    state = obs.get("state")
    if state is None:
        raise MetabonkError("the ALE experts read the RAM from obs['state']; this env gave none")
    return np.rint(np.asarray(state, np.float64) * 255.0)


def _reflect(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fold positions x back into [lo, hi] as a ball bouncing between two walls would."""
    span = hi - lo
    t = np.mod(x - lo, 2 * span)
    return lo + np.where(t > span, 2 * span - t, t)


def _action(meanings: Sequence[str], name: str) -> int:
    try:
        return list(meanings).index(name)
    except ValueError:
        raise MetabonkError(f"this ALE action set has no '{name}' (actions: {', '.join(meanings)})") from None


class _BallTracker:
    """Per-env memory of the last ball position, so the ball's velocity can be read from two frames."""

    def __init__(self) -> None:
        self.prev: np.ndarray | None = None

    def velocity(self, pos: np.ndarray, visible: np.ndarray) -> np.ndarray:
        """Velocity [N, 2] from the previous call; zero where the ball was or is not visible, or jumped."""
        prev = self.prev if self.prev is not None and self.prev.shape == pos.shape else np.full_like(pos, np.nan)
        vel = pos - prev
        jumped = ~np.isfinite(vel).all(1) | (np.abs(vel).max(1) > 40) | ~visible
        vel[jumped] = 0.0
        self.prev = np.where(visible[:, None], pos, np.nan)
        return vel


class _PongPaddle:
    """What both Pong experts track: the right paddle's actions (RIGHT moves it up: ram[51] falls), the ball, and
    the paddle's last height and press (its glide depends on both)."""

    def __init__(self, action_meanings: Sequence[str]) -> None:
        self.noop = _action(action_meanings, "NOOP")
        self.up = _action(action_meanings, "RIGHT")
        self.down = _action(action_meanings, "LEFT")
        self.actions = (self.noop, self.up, self.down)
        self.ball = _BallTracker()
        self.paddle_prev: np.ndarray | None = None
        self.press_prev: np.ndarray | None = None

    def _paddle(self, ram: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(height, travel in the last step, last press) of the paddle [N]; no travel or press on a fresh start."""
        paddle = ram[:, PONG_PADDLE_Y] + _PONG_ALIGN
        if self.paddle_prev is None or self.paddle_prev.shape != paddle.shape or self.press_prev is None:
            self.paddle_prev, self.press_prev = paddle, np.zeros_like(paddle, dtype=np.float64)
        return paddle, np.clip(paddle - self.paddle_prev, -30.0, 30.0), self.press_prev

    def _press(self, paddle: np.ndarray, press: np.ndarray) -> np.ndarray:
        """Remember this step's paddle height and press (-1 up, 0, +1 down) and return its action ids [N]."""
        self.paddle_prev, self.press_prev = paddle, press.astype(np.float64)
        return np.where(press > 0, self.down, np.where(press < 0, self.up, self.noop)).astype(np.int64)


class PongTracker(_PongPaddle):
    """Follows the ball's height one step ahead with the right paddle: presses toward it while the paddle, if
    released now, would come to rest more than `deadband` RAM units away (bang-bang control with braking); with
    no ball in play it returns to the centre.

    The rest point comes from the paddle's fitted glide (see PongExpert): released after travelling v units
    in the last step under press u, it coasts (0.24 v + 7.5 u) / 0.76 more. Unlike the planner it presses often
    (~46 % of steps) and its press depends on what two consecutive frames show (ball and paddle, their motion),
    which behaviour cloning from frames learns (docs/demo.md); the planner's rare, precisely timed presses were
    not learned.
    """

    def __init__(self, action_meanings: Sequence[str], deadband: float = 6.0, lookahead: float = 1.0) -> None:
        super().__init__(action_meanings)
        self.deadband, self.lookahead = deadband, lookahead

    def goal(self, ram: np.ndarray) -> np.ndarray:
        """The height [N] (RAM units) to follow: the ball's `lookahead` steps ahead (wall bounces folded in), the
        centre while no ball is in play."""
        bx, by = ram[:, PONG_BALL_X], ram[:, PONG_BALL_Y]
        visible = bx > 0
        vel = self.ball.velocity(np.stack([bx, by], 1), visible)
        ahead = _reflect(by + self.lookahead * vel[:, 1], _PONG_TOP, _PONG_BOTTOM)
        return np.where(visible, ahead, (_PONG_TOP + _PONG_BOTTOM) / 2)

    def __call__(self, obs: dict[str, Any], info: dict[str, Any] | None = None) -> np.ndarray:
        ram = _ram(obs)
        paddle, travel, press_prev = self._paddle(ram)
        rest = paddle + (_PONG_DRAG * travel + _PONG_PUSH_LAG * press_prev) / (1.0 - _PONG_DRAG)
        error = self.goal(ram) - rest
        return self._press(paddle, np.where(error > self.deadband, 1.0, np.where(error < -self.deadband, -1.0, 0.0)))


class PongExpert(_PongPaddle):
    """The planner: puts the right paddle where the ball will cross the paddle's line (straight-line flight with wall
    bounces), planning its moves through the paddle's inertia; while the ball flies away it follows the
    ball's height.

    The paddle glides: a fitted model of its travel per agent step (frameskip 4, RAM units) is
    d[t] = 0.24 d[t-1] + 10 u[t] + 7.5 u[t-1] with u = -1 (up), 0, +1 (down) — a single press moves it
    ~23 units in all. Each step the expert tries every 3-step press sequence, predicts the paddle's height
    when the ball arrives, and plays the first press of the closest sequence (ties go to pressing less).
    """

    def __init__(self, action_meanings: Sequence[str], aim: float = 0.0, effort: float = 2.0) -> None:
        super().__init__(action_meanings)
        self.aim, self.effort = aim, effort

    def target(self, ram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ball height [N] (RAM units) the paddle should meet, and in how many steps [N] (int)."""
        bx, by = ram[:, PONG_BALL_X], ram[:, PONG_BALL_Y]
        visible = bx > 0
        vel = self.ball.velocity(np.stack([bx, by], 1), visible)
        coming = visible & (vel[:, 0] > 0) & (bx <= _PONG_PADDLE_LINE)
        steps = np.where(coming, (_PONG_PADDLE_LINE - bx) / np.maximum(vel[:, 0], 1e-6), _PLAN_STEPS)
        landing = _reflect(by + vel[:, 1] * np.clip(steps, 0.0, 60.0), _PONG_TOP, _PONG_BOTTOM)
        centre = (_PONG_TOP + _PONG_BOTTOM) / 2
        goal = np.where(coming, landing + self.aim, np.where(visible, by, centre))
        return goal, np.clip(np.ceil(steps), 1, _PLAN_STEPS).astype(np.int64)

    def __call__(self, obs: dict[str, Any], info: dict[str, Any] | None = None) -> np.ndarray:
        ram = _ram(obs)
        paddle, travel, press_prev = self._paddle(ram)
        goal, steps = self.target(ram)
        path = _glide(paddle, travel, press_prev, _PRESSES)  # [N, S, _PLAN_STEPS]
        at_goal = np.take_along_axis(path, (steps - 1)[:, None, None].repeat(path.shape[1], 1), 2)[..., 0]
        cost = np.abs(at_goal - goal[:, None]) + self.effort * np.abs(_PRESSES).sum(1)[None, :]
        return self._press(paddle, _PRESSES[cost.argmin(1), 0])


_PLAN_STEPS = 12
_PRESSES = np.array(list(itertools.product((0, -1, 1), repeat=3)), np.float64)  # [27, 3]; row 0 = no press
_PONG_DRAG, _PONG_PUSH, _PONG_PUSH_LAG = 0.24, 10.0, 7.5
_PONG_PADDLE_MIN, _PONG_PADDLE_MAX = 38.0 + _PONG_ALIGN, 203.0 + _PONG_ALIGN


def _glide(y: np.ndarray, travel: np.ndarray, press_prev: np.ndarray, presses: np.ndarray) -> np.ndarray:
    """Paddle heights [N, S, _PLAN_STEPS] after each of the next steps, for each press sequence [S, k]
    (no presses after it), by the fitted inertia model, stopped at the walls."""
    n, s = y.shape[0], presses.shape[0]
    u = np.zeros((s, _PLAN_STEPS + 1))
    u[:, 1 : presses.shape[1] + 1] = presses
    u = np.broadcast_to(u, (n, s, _PLAN_STEPS + 1)).copy()
    u[:, :, 0] = press_prev[:, None]
    pos = np.repeat(y[:, None], s, 1)
    d = np.repeat(travel[:, None], s, 1)
    out = np.empty((n, s, _PLAN_STEPS))
    for t in range(_PLAN_STEPS):
        d = _PONG_DRAG * d + _PONG_PUSH * u[:, :, t + 1] + _PONG_PUSH_LAG * u[:, :, t]
        pos = np.clip(pos + d, _PONG_PADDLE_MIN, _PONG_PADDLE_MAX)
        out[:, :, t] = pos
    return out


class BreakoutExpert:
    """Serves with FIRE when no ball is in play and keeps the paddle under the ball's predicted landing
    point (straight-line flight with side-wall bounces); while the ball rises it follows the ball's x."""

    def __init__(self, action_meanings: Sequence[str], deadband: float = 3.0) -> None:
        self.noop = _action(action_meanings, "NOOP")
        self.fire = _action(action_meanings, "FIRE")
        self.right = _action(action_meanings, "RIGHT")
        self.left = _action(action_meanings, "LEFT")
        self.actions = (self.noop, self.right, self.left)
        self.deadband = deadband
        self.ball = _BallTracker()

    def target(self, ram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ball x [N] (RAM units) the paddle should be under, and whether a ball is in play [N]."""
        bx, by = ram[:, BREAKOUT_BALL_X], ram[:, BREAKOUT_BALL_Y]
        visible = by > 0
        vel = self.ball.velocity(np.stack([bx, by], 1), visible)
        falling = vel[:, 1] > 0
        steps = np.where(falling, (_BREAKOUT_PADDLE_LINE - by) / np.maximum(vel[:, 1], 1e-6), 0.0)
        landing = _reflect(bx + vel[:, 0] * np.clip(steps, 0.0, 60.0), _BREAKOUT_LEFT, _BREAKOUT_RIGHT)
        return np.where(falling, landing, bx), visible

    def __call__(self, obs: dict[str, Any], info: dict[str, Any] | None = None) -> np.ndarray:
        ram = _ram(obs)
        target, in_play = self.target(ram)
        error = target - (ram[:, BREAKOUT_PADDLE_X] + _BREAKOUT_ALIGN)
        actions = np.full(ram.shape[0], self.noop, np.int64)
        actions[error > self.deadband] = self.right
        actions[error < -self.deadband] = self.left
        actions[~in_play] = self.fire
        return actions


AleExpert = PongTracker | PongExpert | BreakoutExpert
ALE_EXPERTS: dict[str, type[AleExpert]] = {"pong": PongTracker, "breakout": BreakoutExpert}


class Disturbed:
    """An expert whose play is broken, per env, by bursts of `burst` steps of one random action of its own
    (no press, or a press either way), each starting with probability `rate` on a step outside a burst.

    For recording video to clone (as DART, Laskey et al. 2017, injects noise into demonstrations): the
    clean expert's video shows only states the expert keeps, so a clone that drifts off them meets states it
    never saw; here the video also shows the expert recovering. The bursts are state-independent, so the
    expert's action stays the most likely one in every state and a greedy clone plays it.
    """

    def __init__(self, expert: AleExpert, rate: float = 0.03, burst: tuple[int, int] = (1, 3), seed: int = 0) -> None:
        if not 0.0 <= rate <= 1.0 or not 1 <= burst[0] <= burst[1]:
            raise MetabonkError(f"disturbance rate must lie in [0, 1] and burst be 1 ≤ min ≤ max, got {rate}, {burst}")
        self.expert, self.rate, self.burst = expert, rate, burst
        self.rng = np.random.default_rng(seed)
        self.left: np.ndarray | None = None
        self.forced: np.ndarray | None = None

    def __call__(self, obs: dict[str, Any], info: dict[str, Any] | None = None) -> np.ndarray:
        actions = self.expert(obs, info)  # the expert sees every step, so its memory (ball motion) stays right
        n = actions.shape[0]
        if self.left is None or self.forced is None or self.left.shape[0] != n:
            self.left, self.forced = np.zeros(n, np.int64), np.zeros(n, np.int64)
        start = (self.left == 0) & (self.rng.random(n) < self.rate)
        self.left[start] = self.rng.integers(self.burst[0], self.burst[1] + 1, int(start.sum()))
        self.forced[start] = self.rng.choice(np.asarray(self.expert.actions), int(start.sum()))
        on = self.left > 0
        self.left[on] -= 1
        return np.where(on, self.forced, actions).astype(np.int64)


DISTURB_RATE = 0.03
"""Bursts per step of the 'disturbed' policy (1-3 steps each); BC on Pong video disturbed so played closer to the
expert than BC on clean video (docs/demo.md)."""


def ale_expert(game: str, action_meanings: Sequence[str], disturb: float = 0.0, seed: int = 0) -> AleExpert | Disturbed:
    """The scripted expert of ALE `game` ('Pong', 'ale:Breakout', ...), wrapped in `Disturbed` bursts at rate
    `disturb` when > 0; other games are a MetabonkError."""
    key = game.removeprefix("ale:").strip().lower()
    if key not in ALE_EXPERTS:
        raise MetabonkError(f"no scripted expert for ALE game '{game}' (have: {', '.join(sorted(ALE_EXPERTS))})")
    expert = ALE_EXPERTS[key](action_meanings)
    return Disturbed(expert, disturb, seed=seed) if disturb > 0 else expert


__all__ = ["ALE_EXPERTS", "DISTURB_RATE", "BreakoutExpert", "Disturbed", "PongExpert", "PongTracker", "ale_expert"]
