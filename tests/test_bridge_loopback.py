"""Client and server over real loopback sockets: the bridge env matches the local env step for step."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from metabonk.envs.bridge import BridgeError, BridgeServer, BridgeVectorEnv
from metabonk.envs.bridge.protocol import PROTOCOL_NAME, read_message, send_message
from tests.test_bridge_support import SIZE, arena_available, make_toy_env


def _lockstep(bridge: Any, local: Any, steps: int, seed: int, policy: Callable[[int], int]) -> int:
    """Step both envs with the same actions; assert identical obs/reward/flags/final obs; return episodes."""
    ob, _ = bridge.reset(seed=seed)
    ol, _ = local.reset(seed=seed)
    for k in ("pixels", "state"):
        assert np.array_equal(ob[k], ol[k]), f"reset {k} differs"
    episodes = 0
    for t in range(steps):
        a = np.array([policy(t)], np.int64)
        ob, rb, teb, trb, ib = bridge.step(a)
        ol, rl, tel, trl, il = local.step(a)
        for k in ("pixels", "state"):
            assert ob[k].dtype == ol[k].dtype and np.array_equal(ob[k], ol[k]), f"step {t}: {k} differs"
        assert np.array_equal(rb, rl) and rb.dtype == np.float32, f"step {t}: reward {rb} vs {rl}"
        assert np.array_equal(teb, tel) and np.array_equal(trb, trl), f"step {t}: done flags differ"
        if teb[0] or trb[0]:
            episodes += 1
            for k in ("pixels", "state"):
                assert np.array_equal(ib["final_obs"][k], il["final_obs"][k]), f"step {t}: final {k} differs"
        for key in ("episode_return", "episode_length", "menu_open", "card_options", "kills"):
            if key in il:
                assert np.array_equal(ib[key], np.asarray(il[key])), f"step {t}: info[{key}] differs"
        assert isinstance(ib["game_state"][0], dict)
    return episodes


@pytest.mark.parametrize("encoding", ["png", "raw_rgb"])
def test_toy_game_through_bridge_matches_local_env(encoding: str) -> None:
    rng = np.random.default_rng(1)
    actions = rng.integers(0, 21, 400)
    with BridgeServer(make_toy_env, frame_encoding=encoding) as server:
        bridge = BridgeVectorEnv(*server.address, size=SIZE, timeout=10)
        try:
            episodes = _lockstep(bridge, make_toy_env(), 400, seed=5, policy=lambda t: int(actions[t]))
        finally:
            bridge.close()
    assert episodes >= 10  # several autoresets crossed, each matched exactly


@pytest.mark.skipif(not arena_available(), reason="Arena (engineer A) not importable yet")
def test_arena_episodes_through_bridge_match_local_env() -> None:
    from metabonk.envs import make_env

    def factory() -> Any:
        return make_env("arena", num_envs=1, size=SIZE, seed=0, stage_steps=40)

    rng = np.random.default_rng(0)
    actions = rng.integers(0, 21, 200)
    with BridgeServer(factory, name="arena") as server:
        bridge = BridgeVectorEnv(*server.address, size=SIZE, timeout=20)
        try:
            episodes = _lockstep(bridge, factory(), 110, seed=7, policy=lambda t: int(actions[t]))
            _, _, _, _, info = bridge.step(np.array([0]))
        finally:
            bridge.close()
    assert episodes >= 2
    state = info["game_state"][0]  # what a MegaBonk plugin would send, read from the Arena game
    assert state["scene"] == "arena" and 0 < state["player"]["health"] <= state["player"]["max_health"]
    assert len(state["player"]["position"]) == 2 and state["time"] > 0
    assert state["enemies"] and all(e["health"] > 0 for e in state["enemies"])


def test_client_resizes_frames_and_reports_game_state(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="metabonk.bridge")
    with BridgeServer(make_toy_env) as server:
        env = BridgeVectorEnv(*server.address, size=16, seed=3)
        obs, _ = env.reset()
        assert obs["pixels"].shape == (1, 16, 16, 3) and obs["state"].shape == (1, 4)
        assert env.observation_space["pixels"].shape == (1, 16, 16, 3)
        _, _, _, _, info = env.step(np.array([1]))
        state = info["game_state"][0]
        assert state["playing"] is True and state["time"] == 1.0 and state["scene"] == "metabonk-env"
        env.close()
        assert server.connections_served == 1
    logged = caplog.text
    assert "connected" in logged and "closed the connection" in logged  # connections are logged


def test_refused_connection_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connecting is refused
        with pytest.raises(BridgeError, match=f"127.0.0.1:{port}.*refused"):
            BridgeVectorEnv("127.0.0.1", port, connect_timeout=2)


def _fake_game(reply: Callable[[socket.socket], None]) -> tuple[socket.socket, threading.Thread]:
    """A listening socket whose single connection is handled by `reply` (to play a broken game)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def run() -> None:
        conn, _ = listener.accept()
        with conn:
            reply(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener, thread


def test_silent_game_times_out_instead_of_hanging() -> None:
    gate = threading.Event()
    listener, thread = _fake_game(lambda conn: gate.wait(10))
    port = listener.getsockname()[1]
    t0 = time.perf_counter()
    with pytest.raises(BridgeError, match=f"127.0.0.1:{port} sent no reply within 0.5 s"):
        BridgeVectorEnv("127.0.0.1", port, timeout=0.5)
    assert time.perf_counter() - t0 < 3.0
    gate.set()
    thread.join(5)
    listener.close()


def test_game_with_another_major_version_is_refused() -> None:
    def reply(conn: socket.socket) -> None:
        read_message(conn)
        send_message(conn, {"type": "hello", "protocol": PROTOCOL_NAME, "version": "2.3"})  # v2: no role
        error = read_message(conn)  # the client says why it leaves
        assert error.header["type"] == "error" and error.header["code"] == "version_mismatch"

    listener, thread = _fake_game(reply)
    port = listener.getsockname()[1]
    with pytest.raises(BridgeError, match=r"incompatible.*2\.3.*major versions must match"):
        BridgeVectorEnv("127.0.0.1", port, timeout=5)
    thread.join(5)
    listener.close()


def test_plugin_style_structured_actions_drive_the_served_game() -> None:
    """A client sending only move/buttons (as a game-side tool would) plays the same game as discrete."""
    from metabonk.envs.bridge.client import BridgeConnection

    with BridgeServer(make_toy_env) as server:
        conn = BridgeConnection(*server.address, timeout=5)
        hello = conn.request({"type": "hello", "protocol": PROTOCOL_NAME, "version": "1.0",
                              "role": "agent"}, "hello")
        assert hello.header["action_layout"] == "arena-21" and hello.header["num_actions"] == 21
        conn.request({"type": "reset", "seed": 2}, "reset")
        moved = conn.request({"type": "step", "action": {"move": [0, 1], "buttons": {"dash": True}}}, "step")
        conn.close()
    local = make_toy_env()
    local.reset(seed=2)
    obs, reward, *_ = local.step(np.array([12]))  # N with dash
    assert moved.header["vector"] == obs["state"][0].astype(np.float64).tolist()
    assert moved.header["reward"] == float(reward[0])


@pytest.mark.slow
@pytest.mark.skipif(not arena_available(), reason="Arena (engineer A) not importable yet")
def test_full_default_arena_episodes_through_bridge_match_local_env() -> None:
    """Default Arena (64x64, full stage): random play until at least two deaths, step for step."""
    from metabonk.envs import make_env

    def factory() -> Any:
        return make_env("arena", num_envs=1, size=64, seed=0)

    rng = np.random.default_rng(3)
    actions = rng.integers(0, 21, 6000)
    deaths = 0
    with BridgeServer(factory, name="arena") as server:
        bridge = BridgeVectorEnv(*server.address, size=64, timeout=30)
        local = factory()
        try:
            bridge.reset(seed=11)
            local.reset(seed=11)
            for t in range(6000):
                a = np.array([actions[t]])
                ob, rb, teb, trb, _ = bridge.step(a)
                ol, rl, tel, trl, _ = local.step(a)
                assert np.array_equal(ob["pixels"], ol["pixels"]) and np.array_equal(rb, rl), t
                assert teb[0] == tel[0] and trb[0] == trl[0], t
                deaths += int(teb[0])
                if deaths >= 2:
                    break
        finally:
            bridge.close()
    assert deaths >= 2
