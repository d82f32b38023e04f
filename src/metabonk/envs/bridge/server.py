"""The game side of the bridge for any MetaBonk env: `BridgeServer` serves a VectorEnv factory over TCP.

It is the reference peer for plugin authors (`metabonk serve-env`). Each connection gets its own env from the
factory and its own thread. A malformed or out-of-order message is answered with an `error` message and that
connection is closed; the server keeps accepting others.

No peer can lock others out: a whole message must arrive within `idle_timeout` of the wait for it starting
(bytes trickled in slowly do not extend it), the hello within `hello_timeout`, and only a connection that has
sent a valid hello holds one of the `max_clients` slots (at most 4 x max_clients may be waiting for theirs).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from gymnasium.vector import VectorEnv

from metabonk.common.errors import MetabonkError
from metabonk.envs.bridge.actions import ARENA_LAYOUT, ARENA_NUM_ACTIONS, action_to_discrete
from metabonk.envs.bridge.frames import encode_frame
from metabonk.envs.bridge.gamestate import info_row_to_json, served_state
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

log = logging.getLogger("metabonk.bridge")

EnvFactory = Callable[[], VectorEnv]


class _Session:
    """One agent connection: hello, then reset/step until close; owns its env."""

    def __init__(self, server: BridgeServer, conn: socket.socket, peer: str) -> None:
        self.server, self.conn, self.peer = server, conn, peer
        self.env: VectorEnv | None = None
        self.encoding = server.frame_encoding
        self.obs: dict[str, np.ndarray] | None = None  # obs of the running episode (None = needs reset)
        self.pending: dict[str, np.ndarray] | None = None  # next episode's first obs after an autoreset
        self.pending_info: dict[str, Any] = {}
        self.episode = -1
        self.step_count = 0
        self.layout = server.action_layout
        self.num_actions = 0
        self.waited = server.idle_timeout
        self.has_slot = False

    def recv(self, timeout: float | None = None) -> Message:
        wait = self.server.idle_timeout if timeout is None else timeout
        self.waited = wait
        msg = read_message(self.conn, self.server.max_message_bytes, deadline=time.monotonic() + wait)
        if msg.type == "hello":
            check_hello(msg.header)  # a peer of another version hears why, not a schema complaint
        validate_header(msg.header, "agent")
        return msg

    def send(self, header: dict[str, Any], frame: bytes | None = None) -> None:
        send_message(self.conn, header, frame, self.server.max_message_bytes)

    def run(self) -> None:
        try:
            self.handshake()
            while True:
                msg = self.recv()
                if msg.type == "close":
                    self.send({"type": "close", "reason": "agent closed"})
                    log.info("bridge: %s closed the connection", self.peer)
                    return
                if msg.type == "error":
                    log.warning("bridge: %s reported %s: %s", self.peer, msg.header["code"],
                                msg.header["message"])
                    return
                if msg.type == "reset":
                    self.reset(msg.header.get("seed"))
                elif msg.type == "step":
                    self.step(msg.header["action"])
                else:
                    raise ProtocolError("unexpected", f"'{msg.type}' is only valid as the first message")
        except ProtocolError as e:
            log.warning("bridge: rejecting %s: %s (%s)", self.peer, e, e.code)
            self.try_send_error(e.code, str(e))
        except PeerClosed as e:
            log.info("bridge: %s went away: %s", self.peer, e)
        except TimeoutError:
            log.warning("bridge: %s sent no complete message in %.1f s; closing", self.peer, self.waited)
            self.try_send_error("timeout", f"no complete message within {self.waited:g} s")
        except OSError as e:
            log.info("bridge: connection to %s failed: %s", self.peer, e)
        except MetabonkError as e:
            log.warning("bridge: %s: env refused a message: %s", self.peer, e)
            self.try_send_error("bad_action", str(e))
        except Exception as e:  # the server must outlive any env failure; the agent is told why
            log.exception("bridge: internal error serving %s", self.peer)
            self.try_send_error("internal", f"{type(e).__name__}: {e}")
        finally:
            if self.has_slot:
                self.server.release_slot()
            if self.env is not None:
                self.env.close()
            self.conn.close()

    def try_send_error(self, code: str, message: str) -> None:
        try:
            self.send(error_header(code, message))
        except (OSError, BridgeError) as e:
            log.debug("bridge: could not send error to %s: %s", self.peer, e)

    def handshake(self) -> None:
        hello = self.recv(min(self.server.hello_timeout, self.server.idle_timeout))
        if hello.type != "hello":
            raise ProtocolError("unexpected", f"the first message must be 'hello', got '{hello.type}'")
        self.has_slot = self.server.claim_slot()
        if not self.has_slot:
            raise ProtocolError("busy", f"this game serves at most {self.server.max_clients} agents; try later")
        accepted = hello.header.get("frame_encodings")
        if accepted and self.encoding not in accepted:
            known = [e for e in accepted if e in FRAME_ENCODINGS]
            if not known:
                raise ProtocolError("bad_schema", f"none of the agent's frame encodings {accepted} is known "
                                                  f"here ({', '.join(FRAME_ENCODINGS)})")
            self.encoding = known[0]
        try:
            self.env = self.server.env_factory()
        except MetabonkError as e:
            raise ProtocolError("internal", f"the game could not start its env: {e}") from e
        if self.env.num_envs != 1:
            raise ProtocolError("internal", f"the served env must have num_envs=1, got {self.env.num_envs}")
        self.num_actions = int(self.env.single_action_space.n)  # type: ignore[attr-defined]
        if self.layout is None:
            self.layout = ARENA_LAYOUT if self.num_actions == ARENA_NUM_ACTIONS else "discrete"
        space = self.env.single_observation_space
        h, w = space["pixels"].shape[:2]  # type: ignore[index]
        reply: dict[str, Any] = {
            "type": "hello", "protocol": PROTOCOL_NAME, "version": PROTOCOL_VERSION, "role": "game",
            "name": self.server.name, "num_actions": self.num_actions, "action_layout": self.layout,
            "frame_format": {"width": int(w), "height": int(h), "encoding": self.encoding},
        }
        if "state" in space.spaces:  # type: ignore[attr-defined]
            reply["state_dim"] = int(space["state"].shape[0])  # type: ignore[index]
        self.send(reply)
        log.info("bridge: %s connected (%s, %s frames)", self.peer, hello.header.get("name", "agent"),
                 self.encoding)

    def send_obs(self, obs: dict[str, np.ndarray], reward: float, terminated: bool, truncated: bool,
                 info: dict[str, Any]) -> None:
        meta, data = encode_frame(obs["pixels"][0], self.encoding)
        playing = not (terminated or truncated)
        header: dict[str, Any] = {
            "type": "obs", "episode": self.episode, "step": self.step_count, "reward": float(reward),
            "terminated": bool(terminated), "truncated": bool(truncated),
            "state": served_state(self.env, info, 0, self.step_count, playing, self.server.name),
            "info": info_row_to_json(info, 0), "frame": meta,
        }
        if "state" in obs:
            header["vector"] = np.asarray(obs["state"][0], np.float64).tolist()
        self.send(header, data)

    def reset(self, seed: int | None) -> None:
        assert self.env is not None
        if seed is None and self.pending is not None:
            obs, info = self.pending, self.pending_info  # the env already auto-reset (SAME_STEP)
        else:
            obs, info = self.env.reset(seed=seed)
        self.pending, self.pending_info = None, {}
        self.obs = obs
        self.episode += 1
        self.step_count = 0
        self.send_obs(obs, 0.0, False, False, info)

    def step(self, action: dict[str, Any]) -> None:
        assert self.env is not None
        if self.obs is None:
            raise ProtocolError("unexpected", "'step' needs a running episode: send 'reset' first "
                                              "(also after an episode ends)")
        a = action_to_discrete(action, self.layout or "discrete", self.num_actions)
        obs, reward, terminated, truncated, info = self.env.step(np.asarray([a], np.int64))
        self.step_count += 1
        done = bool(terminated[0] or truncated[0])
        if done:
            final = info["final_obs"]
            self.pending, self.pending_info = obs, {}
            self.obs = None
            obs = {k: np.asarray(v) for k, v in final.items()}
        else:
            self.obs = obs
        self.send_obs(obs, float(reward[0]), bool(terminated[0]), bool(truncated[0]), info)


class BridgeServer:
    """Serves `env_factory()` envs (num_envs=1) over the bridge protocol, one thread per connection."""

    def __init__(
        self,
        env_factory: EnvFactory,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "metabonk-env",
        frame_encoding: str = "png",
        action_layout: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        idle_timeout: float = 300.0,
        max_clients: int = 8,
        hello_timeout: float = 10.0,
    ) -> None:
        if frame_encoding not in FRAME_ENCODINGS:
            raise MetabonkError(f"unknown frame encoding '{frame_encoding}' "
                                f"(choose from {', '.join(FRAME_ENCODINGS)})")
        self.env_factory, self.host, self.port, self.name = env_factory, host, port, name
        self.frame_encoding, self.action_layout = frame_encoding, action_layout
        self.max_message_bytes, self.idle_timeout = max_message_bytes, idle_timeout
        if idle_timeout <= 0 or hello_timeout <= 0 or max_clients < 1:
            raise MetabonkError("idle_timeout and hello_timeout must be > 0 and max_clients >= 1")
        self.max_clients, self.hello_timeout = max_clients, hello_timeout
        self.max_pending = 4 * max_clients
        self._slots_used = 0
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._sessions: dict[threading.Thread, socket.socket] = {}
        self.connections_served = 0

    def claim_slot(self) -> bool:
        """Take one of the max_clients slots for a connection that has said hello; False when all are taken."""
        with self._lock:
            if self._slots_used >= self.max_clients:
                return False
            self._slots_used += 1
            return True

    def release_slot(self) -> None:
        with self._lock:
            self._slots_used -= 1

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually bound (port 0 asks the OS for a free one)."""
        if self._listener is None:
            raise MetabonkError("the bridge server is not bound yet; call start() or bind()")
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    def bind(self) -> BridgeServer:
        try:
            sock = socket.create_server((self.host, self.port), reuse_port=False)
        except OSError as e:
            raise BridgeError(f"cannot listen on {self.host}:{self.port}: {e.strerror or e}") from e
        sock.settimeout(0.2)
        self._listener = sock
        log.info("bridge: serving %s on %s:%d", self.name, *self.address)
        return self

    def start(self) -> BridgeServer:
        """Bind and accept in a background thread; returns self (use `address` for the port)."""
        if self._listener is None:
            self.bind()
        self._thread = threading.Thread(target=self.serve_forever, name="bridge-accept", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Accept connections until stop(); each runs in its own thread."""
        if self._listener is None:
            self.bind()
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    break
                raise
            self._admit(conn, f"{addr[0]}:{addr[1]}")

    def _admit(self, conn: socket.socket, peer: str) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(self.hello_timeout)
        with self._lock:
            self._sessions = {t: c for t, c in self._sessions.items() if t.is_alive()}
            busy = len(self._sessions) >= self.max_clients + self.max_pending
            if not busy:
                session = _Session(self, conn, peer)
                thread = threading.Thread(target=session.run, name=f"bridge-{peer}", daemon=True)
                self._sessions[thread] = conn
                self.connections_served += 1
        if busy:
            log.warning("bridge: refusing %s: %d connections open (%d agents + %d saying hello)", peer,
                        len(self._sessions), self.max_clients, self.max_pending)
            try:
                send_message(conn, error_header("busy", f"this game serves at most {self.max_clients} "
                                                        f"agents"))
            except OSError as e:
                log.debug("bridge: could not tell %s it is refused: %s", peer, e)
            conn.close()
            return
        thread.start()

    def stop(self) -> None:
        """Stop accepting, close every open connection and wait briefly for their threads."""
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            sessions = list(self._sessions.items())
        for _, conn in sessions:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                log.debug("bridge: connection already closed at stop")
        for thread, _ in sessions:
            thread.join(timeout=2.0)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    def __enter__(self) -> BridgeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
