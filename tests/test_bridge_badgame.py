"""The client against broken games: every bad reply is a BridgeError naming host:port, never a hang."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from metabonk.envs.bridge import BridgeError, BridgeServer, BridgeVectorEnv
from metabonk.envs.bridge.frames import encode_frame
from metabonk.envs.bridge.protocol import PROTOCOL_NAME, read_message, send_message
from tests.test_bridge_support import SIZE, make_toy_env

GAME_HELLO = {"type": "hello", "protocol": PROTOCOL_NAME, "version": "1.0", "role": "game", "name": "bad"}


def _obs_header(**over: object) -> dict:
    meta, _ = encode_frame(np.zeros((8, 8, 3), np.uint8), "raw_rgb")
    return {"type": "obs", "reward": 0.0, "terminated": False, "truncated": False, "state": {}, "frame": meta,
            **over}


def _run_against(script: Callable[[socket.socket], None], doing: Callable[[BridgeVectorEnv], object],
                 match: str) -> None:
    """Serve one connection with `script`; the client must fail in `doing` with a message matching `match`."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def run() -> None:
        conn, _ = listener.accept()
        with conn:
            read_message(conn)  # agent hello
            send_message(conn, GAME_HELLO)
            try:
                script(conn)
            except (OSError, BridgeError):
                pass  # the client hung up on us, as it should

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    try:
        env = BridgeVectorEnv("127.0.0.1", port, size=SIZE, timeout=2)
        with pytest.raises(BridgeError, match=match) as err:
            doing(env)
        assert f"127.0.0.1:{port}" in str(err.value)
        assert time.perf_counter() - t0 < 8
    finally:
        thread.join(5)
        listener.close()


def _reset(env: BridgeVectorEnv) -> object:
    return env.reset(seed=0)


def test_obs_with_a_frame_that_does_not_decode() -> None:
    def script(conn: socket.socket) -> None:
        read_message(conn)
        h = _obs_header(frame={"encoding": "png", "width": 8, "height": 8})
        send_message(conn, h, b"definitely not a png")
        read_message(conn)

    _run_against(script, _reset, "bad frame.*png frame does not decode")


def test_obs_breaking_the_schema_is_reported_back_to_the_game() -> None:
    seen: list[dict] = []

    def script(conn: socket.socket) -> None:
        read_message(conn)
        header = _obs_header(reward="lots")
        frame = b"\0" * (8 * 8 * 3)
        send_message(conn, header, frame)
        seen.append(read_message(conn).header)  # the client tells the game what was wrong

    _run_against(script, _reset, "broke the protocol while resetting.*reward")
    assert seen and seen[0]["type"] == "error" and seen[0]["code"] == "bad_schema"


def test_oversized_reply_is_refused_without_reading_it() -> None:
    def script(conn: socket.socket) -> None:
        read_message(conn)
        conn.sendall(struct.pack(">I", 2**31))  # claims 2 GiB and sends nothing more
        time.sleep(1)

    _run_against(script, _reset, "oversized|exceeds")


def test_game_dying_in_the_middle_of_a_message() -> None:
    def script(conn: socket.socket) -> None:
        read_message(conn)
        conn.sendall(struct.pack(">I", 500) + b"\x00\x00\x00\x10{")  # 9 of 500 bytes, then gone

    _run_against(script, _reset, "closed the connection while resetting")


def test_game_answering_step_with_the_wrong_message() -> None:
    def script(conn: socket.socket) -> None:
        read_message(conn)
        send_message(conn, _obs_header(), b"\0" * 192)
        read_message(conn)
        send_message(conn, {"type": "hello", "protocol": PROTOCOL_NAME, "version": "1.0", "role": "game"})
        time.sleep(0.5)

    def reset_then_step(env: BridgeVectorEnv) -> object:
        env.reset(seed=0)
        return env.step(np.array([0]))

    _run_against(script, reset_then_step, "answered step with 'hello'")


def test_game_error_message_is_surfaced() -> None:
    def script(conn: socket.socket) -> None:
        read_message(conn)
        send_message(conn, {"type": "error", "code": "internal", "message": "the scene failed to load"})

    _run_against(script, _reset, "refused resetting: internal: the scene failed to load")


def test_four_agents_at_once_each_match_their_local_game() -> None:
    """One server, four concurrent connections (one thread and one env each), all exact."""
    failures: list[str] = []

    def agent(seed: int, port: int) -> None:
        try:
            env = BridgeVectorEnv("127.0.0.1", port, size=SIZE, timeout=20)
            local = make_toy_env()
            ob, _ = env.reset(seed=seed)
            ol, _ = local.reset(seed=seed)
            for t in range(120):
                a = np.array([(seed * 7 + t) % 21])
                ob, rb, *_ = env.step(a)
                ol, rl, *_ = local.step(a)
                if not (np.array_equal(ob["pixels"], ol["pixels"]) and np.array_equal(rb, rl)):
                    failures.append(f"agent {seed} diverged at step {t}")
                    break
            env.close()
        except BridgeError as e:
            failures.append(f"agent {seed}: {e}")

    with BridgeServer(make_toy_env) as server:
        port = server.address[1]
        threads = [threading.Thread(target=agent, args=(s, port)) for s in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert server.connections_served == 4
    assert not failures, failures
