"""A served game rejects malformed messages (error reply, connection closed) and keeps serving others."""

from __future__ import annotations

import json
import socket
import struct

import numpy as np
import pytest

from metabonk.envs.bridge import BridgeServer, BridgeVectorEnv
from metabonk.envs.bridge.protocol import PROTOCOL_NAME, PeerClosed, decode_payload, encode_message
from tests.test_bridge_support import SIZE, make_toy_env

MAX = 64 * 1024
HELLO = {"type": "hello", "protocol": PROTOCOL_NAME, "version": "1.0", "role": "agent"}


def _raw(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def _json(header: object) -> bytes:
    head = json.dumps(header).encode()
    return _raw(struct.pack(">I", len(head)) + head)


def _replies(port: int, *chunks: bytes, timeout: float = 5.0) -> list[dict]:
    """Send `chunks` on a fresh connection, then read every reply until the server closes the connection."""
    out: list[dict] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        for c in chunks:
            try:
                s.sendall(c)
            except OSError:
                break  # the server already closed on an earlier chunk
        try:
            s.shutdown(socket.SHUT_WR)  # a truncated message then ends in EOF, not in the idle timeout
        except OSError:
            pass  # already closed by the server
        buf = b""
        while True:
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break  # closed by the server: what every rejection must end with
            buf += data
        while len(buf) >= 4:
            (n,) = struct.unpack(">I", buf[:4])
            out.append(decode_payload(buf[4:4 + n]).header)
            buf = buf[4 + n:]
    return out


@pytest.fixture()
def served():
    server = BridgeServer(make_toy_env, max_message_bytes=MAX, idle_timeout=60).start()
    good = BridgeVectorEnv(*server.address, size=SIZE, timeout=10, max_message_bytes=MAX)
    good.reset(seed=0)
    yield server, good
    good.close()
    server.stop()


CASES = {
    "length below minimum": (_raw(b"\x00\x00"), "bad_length"),
    "header longer than payload": (_raw(b"\x00\x00\x10\x00{}"), "bad_length"),
    "not JSON": (_raw(b"\x00\x00\x00\x05hello"), "bad_json"),
    "not UTF-8": (_raw(b"\x00\x00\x00\x04\xc3\x28{}"), "bad_json"),
    "unknown type": (_json({"type": "teleport"}), "bad_schema"),
    "hello missing version": (_json({k: v for k, v in HELLO.items() if k != "version"}), "bad_schema"),
    "wrong major version": (_json({**HELLO, "version": "2.0"}), "version_mismatch"),
    "other protocol": (_json({**HELLO, "protocol": "x"}), "protocol_mismatch"),
    "v2 hello without v1 fields": (_json({"type": "hello", "protocol": PROTOCOL_NAME, "version": "2.1"}),
                                   "version_mismatch"),
    "oversized": (struct.pack(">I", MAX + 1) + b"\0" * 64, "oversized"),
    "step before hello": (_json({"type": "step", "action": {"discrete": 1}}), "unexpected"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_first_message_is_rejected_and_closed(served, name: str) -> None:
    server, good = served
    data, code = CASES[name]
    replies = _replies(server.address[1], data)
    assert [r["type"] for r in replies] == ["error"], replies
    assert replies[0]["code"] == code, replies[0]
    assert good.step(np.array([3]))[0]["pixels"].shape == (1, SIZE, SIZE, 3)  # the other agent plays on


def test_mid_session_violations_are_rejected(served) -> None:
    server, good = served
    port = server.address[1]
    hello = _json(HELLO)
    for chunks, code in [
        ((hello, _json({"type": "step", "action": {"discrete": 1}})), "unexpected"),  # step before reset
        ((hello, _json({"type": "reset"}), _json({"type": "step", "action": {}})), "bad_schema"),
        ((hello, _json({"type": "reset"}), _json({"type": "step", "action": {"discrete": 99}})),
         "bad_action"),
        ((hello, _json(HELLO)), "unexpected"),  # a second hello
        ((hello, _json({"type": "reset", "seed": -4})), "bad_schema"),
        ((hello, _raw(b"\x00\x00\x00\x02{}") ), "bad_schema"),  # no type
    ]:
        replies = _replies(port, *chunks)
        assert replies[-1]["type"] == "error" and replies[-1]["code"] == code, (chunks, replies)
        assert all(r["type"] in ("hello", "obs") for r in replies[:-1])
    good.step(np.array([0]))


def test_close_is_acknowledged(served) -> None:
    server, _ = served
    replies = _replies(server.address[1], _json(HELLO), _json({"type": "close"}))
    assert [r["type"] for r in replies] == ["hello", "close"]


def test_idle_connection_times_out_without_blocking_others(served) -> None:
    server, good = served
    server.idle_timeout = 0.5
    with socket.create_connection(server.address, timeout=5) as idle:
        good.step(np.array([1]))  # served while the idle connection is open
        data = idle.recv(65536)
    (n,) = struct.unpack(">I", data[:4])
    assert decode_payload(data[4:4 + n]).header["code"] == "timeout"


def test_busy_server_refuses_extra_agents() -> None:
    with BridgeServer(make_toy_env, max_clients=1) as server:
        first = BridgeVectorEnv(*server.address, size=SIZE)
        replies = _replies(server.address[1], _json(HELLO))
        assert replies and replies[0]["code"] == "busy"
        first.close()


def test_fuzz_random_bytes_never_break_the_server(served) -> None:
    """300 connections of random bytes (some behind a valid hello, some with a plausible length prefix)."""
    server, good = served
    rng = np.random.default_rng(1234)
    port = server.address[1]
    rejected = 0
    for i in range(300):
        blob = rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8).tobytes()
        if i % 3 == 1:
            blob = _raw(blob)  # valid outer length, garbage payload
        chunks = (_json(HELLO), blob) if i % 2 else (blob,)
        try:
            replies = _replies(port, *chunks, timeout=8)
        except (TimeoutError, PeerClosed) as e:  # pragma: no cover - would be the bug this test hunts
            pytest.fail(f"fuzz case {i}: server hung or broke framing: {e}")
        # every reply is well-formed; anything rejected ends with an error message
        assert all(r["type"] in ("hello", "obs", "error") for r in replies)
        rejected += bool(replies) and replies[-1]["type"] == "error"
    assert rejected >= 250  # the rest were truncated messages, ended by our EOF without a reply
    for t in range(20):
        good.step(np.array([t % 21]))
    assert server._thread is not None and server._thread.is_alive()


def test_encode_refuses_what_decode_would_refuse() -> None:
    with pytest.raises(Exception, match="frame"):
        encode_message({"type": "obs"}, b"123")
