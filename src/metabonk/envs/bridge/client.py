"""The agent side of the bridge: `BridgeVectorEnv`, a Gymnasium VectorEnv (num_envs=1) over one TCP socket.

It speaks docs/bridge.md to a game plugin or to `metabonk serve-env`: observations are the usual
{"pixels": uint8 [1,size,size,3], "state": float32 [1,D]} (frames resized to `size`), autoreset is SAME_STEP
(the reset is a `reset` message sent inside the step that ended the episode), and `info["game_state"]` holds
the game's JSON state. Any failure — refused, timed out, closed mid-episode, an `error` from the game —
raises `BridgeError` naming host:port; the env never hangs longer than `timeout`.
"""

from __future__ import annotations

import socket
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from metabonk.common.errors import MetabonkError
from metabonk.envs.bridge.actions import ARENA_LAYOUT, ARENA_NUM_ACTIONS, discrete_to_action
from metabonk.envs.bridge.frames import decode_frame, resize_frame
from metabonk.envs.bridge.gamestate import STATE_DIM, encode_state, info_row_from_json
from metabonk.envs.bridge.protocol import (
    DEFAULT_MAX_MESSAGE_BYTES,
    PROTOCOL_NAME,
    PROTOCOL_VERSION,
    BridgeError,
    Message,
    PeerClosed,
    ProtocolError,
    check_hello,
    error_header,
    read_message,
    send_message,
)
from metabonk.envs.bridge.schema import FRAME_ENCODINGS, validate_header


class BridgeConnection:
    """A validated request/reply channel to one game; every failure is a BridgeError naming host:port."""

    def __init__(self, host: str, port: int, timeout: float = 30.0, connect_timeout: float = 10.0,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.host, self.port, self.timeout, self.max_message_bytes = host, port, timeout, max_message_bytes
        self.where = f"{host}:{port}"
        self.broken: str | None = None
        try:
            self.sock = socket.create_connection((host, port), timeout=connect_timeout)
        except TimeoutError as e:
            raise BridgeError(f"cannot connect to the bridge game at {self.where}: no answer within "
                              f"{connect_timeout:.0f} s") from e
        except OSError as e:
            raise BridgeError(f"cannot connect to the bridge game at {self.where}: {e.strerror or e} "
                              f"(is `metabonk serve-env` or the game plugin listening there?)") from e
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)

    def _fail(self, what: str, cause: BaseException | None = None) -> BridgeError:
        self.broken = what
        try:
            self.sock.close()
        except OSError:
            pass  # already closed; the error below says what happened
        err = BridgeError(what)
        err.__cause__ = cause
        return err

    def request(self, header: dict[str, Any], doing: str) -> Message:
        """Send one message and read the game's reply (an `error` reply raises)."""
        if self.broken is not None:
            raise BridgeError(f"the bridge connection to {self.where} is unusable: {self.broken}")
        try:
            send_message(self.sock, header, None, self.max_message_bytes)
            msg = read_message(self.sock, self.max_message_bytes)
            if msg.type == "hello":
                check_hello(msg.header)
            validate_header(msg.header, "game")
        except ProtocolError as e:
            try:
                send_message(self.sock, error_header(e.code, str(e)))
            except OSError:
                pass  # the game is gone too; our error names the real problem
            if e.code in ("version_mismatch", "protocol_mismatch"):
                raise self._fail(f"the game at {self.where} is incompatible: {e}", e) from e
            raise self._fail(f"the game at {self.where} broke the protocol while {doing}: {e}", e) from e
        except (PeerClosed, ConnectionResetError, BrokenPipeError) as e:
            raise self._fail(f"the game at {self.where} closed the connection while {doing} "
                             f"(it quit or died)", e) from e
        except TimeoutError as e:
            raise self._fail(f"the game at {self.where} sent no reply within {self.timeout:g} s while "
                             f"{doing}", e) from e
        except OSError as e:
            raise self._fail(f"the connection to the game at {self.where} failed while {doing}: "
                             f"{e.strerror or e}", e) from e
        if msg.type == "error":
            raise self._fail(f"the game at {self.where} refused {doing}: {msg.header['code']}: "
                             f"{msg.header['message']}")
        return msg

    def close(self) -> None:
        if self.broken is None:
            try:
                self.sock.settimeout(min(self.timeout, 2.0))
                send_message(self.sock, {"type": "close", "reason": "agent done"})
                read_message(self.sock, self.max_message_bytes)
            except (OSError, BridgeError):
                pass  # closing anyway: the game may already be gone
            self.broken = "closed"
        self.sock.close()


class BridgeVectorEnv(VectorEnv):
    """A game across the bridge as a VectorEnv (num_envs=1) with the docs/architecture.md contract."""

    def __init__(self, host: str, port: int, timeout: float = 30.0, size: int = 64, seed: int | None = None,
                 num_envs: int = 1, connect_timeout: float = 10.0,
                 frame_encodings: tuple[str, ...] = FRAME_ENCODINGS,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, name: str = "metabonk") -> None:
        if num_envs != 1:
            raise MetabonkError(f"a bridge connection drives one game (num_envs=1), got num_envs={num_envs}; "
                                f"open one bridge per game instance")
        if not 1 <= size <= 1024:
            raise MetabonkError(f"frame size must be in 1..1024, got {size}")
        self.conn = BridgeConnection(host, port, timeout, connect_timeout, max_message_bytes)
        hello = self.conn.request({
            "type": "hello", "protocol": PROTOCOL_NAME, "version": PROTOCOL_VERSION, "role": "agent",
            "name": name, "frame_size": size, "frame_encodings": list(frame_encodings),
        }, "saying hello")
        if hello.type != "hello":
            self.conn.close()
            raise BridgeError(f"the game at {self.conn.where} answered hello with '{hello.type}'")
        self.game_info = hello.header
        self.size = size
        self._seed = seed
        self.num_envs = 1
        n = int(hello.header.get("num_actions", ARENA_NUM_ACTIONS))
        self.action_layout = str(hello.header.get("action_layout", ARENA_LAYOUT))
        self.game_state_dim: int | None = hello.header.get("state_dim")
        state_dim = int(self.game_state_dim or STATE_DIM)
        self.metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}
        self.render_mode = None
        self.single_action_space = gym.spaces.Discrete(n)
        self.action_space = gym.spaces.MultiDiscrete(np.full(1, n, dtype=np.int64))
        self.single_observation_space = gym.spaces.Dict({
            "pixels": gym.spaces.Box(0, 255, (size, size, 3), np.uint8),
            "state": gym.spaces.Box(-np.inf, np.inf, (state_dim,), np.float32),
        })
        self.observation_space = gym.spaces.Dict({
            "pixels": gym.spaces.Box(0, 255, (1, size, size, 3), np.uint8),
            "state": gym.spaces.Box(-np.inf, np.inf, (1, state_dim), np.float32),
        })
        self._state_dim = state_dim
        self._ret = 0.0
        self._len = 0
        self._started = False

    @property
    def num_actions(self) -> int:
        return int(self.single_action_space.n)

    def _decode(self, msg: Message) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        h = msg.header
        try:
            assert msg.frame is not None  # the obs schema requires a frame
            pixels = resize_frame(decode_frame(h["frame"], msg.frame), self.size)
        except ProtocolError as e:
            raise self.conn._fail(f"the game at {self.conn.where} sent a bad frame: {e}", e) from e
        if "vector" in h and self.game_state_dim is not None:
            vec = np.asarray(h["vector"], np.float32)
            if vec.shape != (self._state_dim,):
                raise self.conn._fail(f"the game at {self.conn.where} sent a state vector of length "
                                      f"{vec.shape[0]}, its hello promised {self._state_dim}")
        else:
            vec = encode_state(h["state"])
        info: dict[str, Any] = info_row_from_json(h.get("info", {}))
        info["game_state"] = np.array([h["state"]], dtype=object)
        return {"pixels": pixels[None], "state": vec[None]}, info

    def _reset_one(self, seed: int | None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        msg = self.conn.request({"type": "reset", "seed": seed}, "resetting")
        if msg.type != "obs":
            raise self.conn._fail(f"the game at {self.conn.where} answered reset with '{msg.type}'")
        self._ret, self._len = 0.0, 0
        return self._decode(msg)

    def reset(self, *, seed: int | list[int] | None = None,
              options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if isinstance(seed, list):
            if len(seed) != 1:
                raise MetabonkError(f"a bridge env takes one seed, got {len(seed)}")
            seed = seed[0]
        if seed is None and not self._started:
            seed = self._seed
        self._started = True
        return self._reset_one(None if seed is None else int(seed))

    def step(self, actions: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray,
                                                 dict[str, Any]]:
        if not self._started:
            raise MetabonkError("call reset() before step()")
        a = np.asarray(actions).reshape(-1)
        if a.shape[0] != 1:
            raise MetabonkError(f"expected 1 action, got {a.shape[0]}")
        if not 0 <= int(a[0]) < self.num_actions:
            raise MetabonkError(f"actions must lie in [0, {self.num_actions}), got {a.tolist()}")
        action = discrete_to_action(int(a[0]), self.action_layout, self.num_actions)
        msg = self.conn.request({"type": "step", "action": action}, "stepping")
        if msg.type != "obs":
            raise self.conn._fail(f"the game at {self.conn.where} answered step with '{msg.type}'")
        obs, info = self._decode(msg)
        h = msg.header
        reward = np.array([h["reward"]], np.float32)
        terminated = np.array([h["terminated"]], bool)
        truncated = np.array([h["truncated"]], bool)
        self._ret += float(reward[0])
        self._len += 1
        done = bool(terminated[0] or truncated[0])
        info.setdefault("episode_return", np.array([self._ret if done else 0.0], np.float32))
        info.setdefault("episode_length", np.array([self._len if done else 0], np.int64))
        if done:
            info["final_obs"] = obs
            obs, _ = self._reset_one(None)
        return obs, reward, terminated, truncated, info

    def close_extras(self, **kwargs: Any) -> None:
        self.conn.close()
