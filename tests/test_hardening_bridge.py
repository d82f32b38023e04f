"""The bridge server cannot be locked out: silent sockets and byte-trickling peers lose their place, agents play."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time

import numpy as np
import pytest

from metabonk.envs.bridge import BridgeServer, BridgeVectorEnv
from metabonk.envs.bridge.protocol import PROTOCOL_NAME, decode_payload
from tests.test_bridge_support import SIZE, make_toy_env

HELLO = {"type": "hello", "protocol": PROTOCOL_NAME, "version": "1.0", "role": "agent"}


def _hello_bytes() -> bytes:
    head = json.dumps(HELLO).encode()
    payload = struct.pack(">I", len(head)) + head
    return struct.pack(">I", len(payload)) + payload


def _error_code(sock: socket.socket) -> str | None:
    """The code of the error the server sent before closing (None if it closed without one)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except OSError:
        pass
    if len(data) < 4:
        return None
    (n,) = struct.unpack(">I", data[:4])
    return str(decode_payload(data[4:4 + n]).header.get("code"))


def _play(server: BridgeServer) -> None:
    env = BridgeVectorEnv(*server.address, size=SIZE)
    try:
        env.reset(seed=0)
        for _ in range(3):
            env.step(np.array([1]))
    finally:
        env.close()


def test_silent_sockets_take_no_slot_and_are_dropped_after_the_hello_deadline() -> None:
    with BridgeServer(make_toy_env, max_clients=2, idle_timeout=300.0, hello_timeout=1.0) as server:
        silent = [socket.create_connection(server.address, timeout=10) for _ in range(8)]
        t0 = time.monotonic()
        _play(server)  # 8 silent sockets > max_clients, and an agent still plays at once
        assert time.monotonic() - t0 < 5.0
        codes = [_error_code(s) for s in silent]
        assert codes == ["timeout"] * 8 and time.monotonic() - t0 < 8.0
        for s in silent:
            s.close()


def test_a_message_trickled_byte_by_byte_times_out_on_its_own_deadline() -> None:
    with BridgeServer(make_toy_env, max_clients=8, idle_timeout=1.0, hello_timeout=1.0) as server:
        stop = threading.Event()
        lorises = [socket.create_connection(server.address, timeout=10) for _ in range(8)]

        def trickle(s: socket.socket) -> None:
            for byte in _hello_bytes() * 100:  # never finishes within the deadline: 1 byte / 100 ms
                if stop.is_set():
                    return
                try:
                    s.send(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.1)

        threads = [threading.Thread(target=trickle, args=(s,), daemon=True) for s in lorises]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        codes = [_error_code(s) for s in lorises]
        assert codes == ["timeout"] * 8, codes
        assert time.monotonic() - t0 < 4.0  # dropped after ~1 s, not kept alive by each byte
        stop.set()
        _play(server)
        for s in lorises:
            s.close()


def test_slots_are_counted_after_hello_and_pending_connections_are_bounded() -> None:
    with BridgeServer(make_toy_env, max_clients=1, hello_timeout=5.0) as server:
        first = BridgeVectorEnv(*server.address, size=SIZE)
        extra = socket.create_connection(server.address, timeout=10)
        extra.sendall(_hello_bytes())
        assert _error_code(extra) == "busy"  # the one slot is taken by an agent that said hello
        extra.close()
        first.close()
        time.sleep(0.2)
        waiting = [socket.create_connection(server.address, timeout=10) for _ in range(server.max_pending + 2)]
        time.sleep(0.3)
        refused = socket.create_connection(server.address, timeout=10)
        assert _error_code(refused) == "busy"  # beyond max_clients + max_pending open connections
        for s in [*waiting, refused]:
            s.close()


def _payload(header: dict) -> bytes:
    head = json.dumps(header).replace('"INF"', "1e999").encode()
    return struct.pack(">I", len(head)) + head


def test_non_finite_and_oversized_numbers_are_refused() -> None:
    import pytest

    from metabonk.envs.bridge.protocol import ProtocolError

    for header in ({"type": "obs", "reward": "INF"}, {"type": "reset", "seed": 2**64}):
        with pytest.raises(ProtocolError) as e:
            decode_payload(_payload(header))
        assert e.value.code == "bad_json"
    assert decode_payload(_payload({"type": "reset", "seed": 2**32})).header["seed"] == 2**32


def test_unknown_frame_encodings_in_hello_are_skipped_and_a_broken_png_is_named_plainly() -> None:
    import pytest

    from metabonk.envs.bridge.frames import decode_frame
    from metabonk.envs.bridge.protocol import ProtocolError, read_message

    with BridgeServer(make_toy_env, frame_encoding="png") as server:
        for offered, expect in ((["webp", "raw_rgb"], "raw_rgb"), (["webp"], None)):
            with socket.create_connection(server.address, timeout=10) as s:
                head = json.dumps({**HELLO, "frame_encodings": offered}).encode()
                payload = struct.pack(">I", len(head)) + head
                s.sendall(struct.pack(">I", len(payload)) + payload)
                reply = read_message(s)
                if expect is None:
                    assert reply.header["type"] == "error" and "none of the agent's frame encodings" in \
                        reply.header["message"]
                else:
                    assert reply.header["frame_format"]["encoding"] == expect
    with pytest.raises(ProtocolError) as e:
        decode_frame({"encoding": "png", "width": 4, "height": 4}, b"\x89PNG garbage")
    assert "BytesIO" not in str(e.value) and "not a png image" in str(e.value)


@pytest.mark.parametrize("reward", ["1e999", "NaN", "-Infinity"])
def test_a_game_sending_a_non_finite_reward_is_named_by_host_and_port(reward: str) -> None:
    from tests.test_bridge_badgame import _obs_header, _reset, _run_against

    def script(conn: socket.socket) -> None:
        from metabonk.envs.bridge.protocol import read_message

        read_message(conn)  # reset
        header = json.dumps({**_obs_header(), "reward": "R"}).replace('"R"', reward).encode()
        frame = bytes(8 * 8 * 3)
        payload = struct.pack(">I", len(header)) + header + frame
        conn.sendall(struct.pack(">I", len(payload)) + payload)
        time.sleep(1)

    _run_against(script, _reset, "broke the protocol")
