"""Bridge protocol units: framing, schemas, frame codecs, action and state encodings (no sockets)."""

from __future__ import annotations

import numpy as np
import pytest

from metabonk.envs.bridge.actions import action_to_discrete, discrete_to_action
from metabonk.envs.bridge.frames import decode_frame, encode_frame, resize_frame
from metabonk.envs.bridge.gamestate import STATE_DIM, encode_state, info_row_from_json, info_row_to_json
from metabonk.envs.bridge.protocol import (
    PROTOCOL_NAME,
    ProtocolError,
    check_hello,
    decode_payload,
    encode_message,
)
from metabonk.envs.bridge.schema import validate_header


def _frame(seed: int = 0, h: int = 24, w: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_message_round_trip_with_and_without_frame() -> None:
    meta, data = encode_frame(_frame(), "raw_rgb")
    wire = encode_message({"type": "x", "frame": meta, "n": 1}, data)
    assert int.from_bytes(wire[:4], "big") == len(wire) - 4
    msg = decode_payload(wire[4:])
    assert msg.header["frame"]["bytes"] == len(data) and msg.frame == data
    plain = decode_payload(encode_message({"type": "close"})[4:])
    assert plain.header == {"type": "close"} and plain.frame is None


@pytest.mark.parametrize("payload, code", [
    (b"\x00\x00", "bad_length"),
    (b"\x00\x00\x00\xff{}", "bad_length"),              # header longer than the payload
    (b"\x00\x00\x00\x02{}junk", "bad_length"),          # bytes after a header without frame
    (b"\x00\x00\x00\x04\xff\xfe{}", "bad_json"),         # not UTF-8
    (b"\x00\x00\x00\x05[1,2]", "bad_json"),              # JSON but not an object
    (b"\x00\x00\x00\x03NaN", "bad_json"),                # NaN is not JSON
])
def test_decode_rejects_malformed_payloads(payload: bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as e:
        decode_payload(payload)
    assert e.value.code == code


def test_oversized_message_is_refused_when_encoding() -> None:
    with pytest.raises(ProtocolError) as e:
        encode_message({"type": "obs", "frame": {"encoding": "raw_rgb"}}, b"\0" * 1000, max_bytes=500)
    assert e.value.code == "oversized"


def test_hello_version_checks() -> None:
    check_hello({"protocol": PROTOCOL_NAME, "version": "1.7"})  # minor differences are fine
    with pytest.raises(ProtocolError) as e:
        check_hello({"protocol": PROTOCOL_NAME, "version": "2.0"})
    assert e.value.code == "version_mismatch" and "2.0" in str(e.value) and "1.0" in str(e.value)
    with pytest.raises(ProtocolError) as e:
        check_hello({"protocol": "gym-bridge", "version": "1.0"})
    assert e.value.code == "protocol_mismatch"


def test_schemas_accept_valid_and_name_the_bad_field() -> None:
    validate_header({"type": "step", "action": {"move": [0.5, -1], "buttons": {"dash": True},
                                                "ui_click": {"x": 0.2, "y": 0.9}}}, "agent")
    validate_header({"type": "obs", "reward": 1.5, "terminated": False, "truncated": False,
                     "state": {"player": {"position": [1, 2, 3], "health": 5}, "menu": None,
                               "enemies": [{"position": [0, 1], "health": 2}],
                               "level_up_options": [{"index": 0, "id": "damage"}]},
                     "frame": {"encoding": "png", "width": 4, "height": 4, "bytes": 10}}, "game")
    bad = [
        ({"type": "step", "action": {}}, "agent", "action"),
        ({"type": "step", "action": {"move": [2, 0]}}, "agent", "action/move/0"),
        ({"type": "step", "action": {"discrete": -1}}, "agent", "action/discrete"),
        ({"type": "obs", "reward": 1}, "agent", "unknown message type 'obs'"),
        ({"type": "reset", "seed": "abc"}, "agent", "seed"),
        ({"type": "obs", "reward": "x", "terminated": False, "truncated": False, "state": {},
          "frame": {"encoding": "png", "width": 4, "height": 4, "bytes": 10}}, "game", "reward"),
        ({"type": "error", "code": "nope", "message": "m"}, "game", "code"),
    ]
    for header, sender, where in bad:
        with pytest.raises(ProtocolError) as e:
            validate_header(header, sender)
        assert e.value.code == "bad_schema" and where in str(e.value), str(e.value)


def test_frame_codecs() -> None:
    px = _frame()
    for enc in ("png", "raw_rgb"):
        meta, data = encode_frame(px, enc)
        assert np.array_equal(decode_frame(meta, data), px)  # lossless
    smooth = np.repeat(np.linspace(0, 255, 40, dtype=np.uint8)[None, :, None], 24, 0).repeat(3, 2)
    meta, data = encode_frame(smooth, "jpeg")
    err = np.abs(decode_frame(meta, data).astype(int) - smooth).mean()
    assert err < 3.0
    with pytest.raises(ProtocolError):
        decode_frame({"encoding": "png", "width": 40, "height": 24}, b"not a png")
    with pytest.raises(ProtocolError):  # declared size disagrees with the image
        decode_frame({"encoding": "png", "width": 41, "height": 24}, encode_frame(px, "png")[1])
    with pytest.raises(ProtocolError):
        decode_frame({"encoding": "raw_rgb", "width": 40, "height": 24}, b"\0" * 7)
    assert resize_frame(px, 16).shape == (16, 16, 3)
    assert resize_frame(px[:16, :16], 16) is not None


def test_every_discrete_action_round_trips_through_structured_controls() -> None:
    for a in range(21):
        msg = discrete_to_action(a, "arena-21", 21)
        assert action_to_discrete(msg, "arena-21", 21) == a
        structured = {k: v for k, v in msg.items() if k != "discrete"}  # what a plugin would read
        assert action_to_discrete(structured, "arena-21", 21) == a
    assert action_to_discrete({"move": [0.1, 0.1]}, "arena-21", 21) == 0  # dead zone = stand
    assert action_to_discrete({"move": [0.9, 0.8], "buttons": {"dash": True}}, "arena-21", 21) == 11
    with pytest.raises(ProtocolError):
        action_to_discrete({"move": [1, 0]}, "discrete", 6)
    with pytest.raises(ProtocolError):
        action_to_discrete({"discrete": 6}, "discrete", 6)


def test_state_encoding_orders_enemies_by_distance() -> None:
    state = {"player": {"position": [10, 10], "velocity": [1, 0], "health": 50, "max_health": 100},
             "time": 12.5, "playing": True, "menu": "level_up",
             "enemies": [{"position": [30, 10], "health": 3}, {"position": [11, 12], "health": 7}],
             "level_up_options": [{"index": 0}, {"index": 2}]}
    v = encode_state(state)
    assert v.shape == (STATE_DIM,) and v.dtype == np.float32
    assert v[6] == 0.5 and v[7] == 12.5 and v[10] == 1.0
    assert list(v[12:16]) == [1, 2, 7, 1] and list(v[16:20]) == [20, 0, 3, 1]
    assert list(v[-3:]) == [1, 0, 1]
    assert not encode_state({}).any()


def test_info_rows_keep_dtypes() -> None:
    info = {"episode_return": np.array([1.25, 2], np.float32), "kills": np.array([3, 4]),
            "menu_open": np.array([True, False]), "card_options": np.array([[1, 2, 3], [4, 5, 6]]),
            "final_obs": {"pixels": np.zeros((2, 1))}, "nan": np.array([1.0, np.inf])}
    row = info_row_to_json(info, 1)
    assert row == {"episode_return": 2.0, "kills": 4, "menu_open": False, "card_options": [4, 5, 6]}
    back = info_row_from_json(row)
    assert back["episode_return"].dtype == np.float32 and back["kills"].dtype == np.int64
    assert back["menu_open"].dtype == bool and back["card_options"].shape == (1, 3)


def _mutations(header: dict, rng: np.random.Generator, n: int) -> list[dict]:
    """Copies of `header` with one nested value replaced by a random JSON value, or deleted."""
    import copy

    pool = [None, True, False, 0, -1, 1, 2.0, 1.5, -0.5, 1e9, "x", "1.0", "png", [], {}, [1, 2], [0.5, -2],
            {"a": 1}, {"option": 1}, {"x": 0.5, "y": 0.5}, [{"index": 0}], [{"position": [1, 2]}]]
    out = []
    for _ in range(n):
        h = copy.deepcopy(header)
        node: dict | list = h
        for depth in range(5):  # walk down a random path, stop at a random depth
            key = rng.choice(list(node)) if isinstance(node, dict) else int(rng.integers(len(node)))
            child = node[key]
            if isinstance(child, dict | list) and child and depth < 4 and rng.random() > 0.3:
                node = child
                continue
            break
        if isinstance(node, dict) and rng.random() < 0.25:
            del node[key]
        else:
            node[key] = copy.deepcopy(pool[int(rng.integers(len(pool)))])
        out.append(h)
    return out


def test_fast_validator_agrees_with_jsonschema() -> None:
    from metabonk.envs.bridge.schema import reference_validator

    state = {"player": {"position": [1.0, 2.0], "velocity": [0, 0], "health": 9, "max_health": 10, "level": 1,
                        "xp": 0.5},
             "time": 0.6, "playing": True, "paused": False, "scene": "arena", "menu": "level_up",
             "enemies": [{"position": [1.0, 2.0, 3], "health": 3, "elite": False, "boss": True}],
             "level_up_options": [{"index": 0, "id": "damage", "name": "d"}, {"index": 1, "id": 4}]}
    bases = [
        ("game", {"type": "obs", "episode": 0, "step": 3, "reward": 0.5, "terminated": False,
                  "truncated": False, "state": state, "vector": [0.1, -2, 3],
                  "info": {"kills": 0, "menu_open": False, "card_options": [1, 2, 3]},
                  "frame": {"encoding": "png", "width": 64, "height": 64, "bytes": 369}}),
        ("game", {"type": "hello", "protocol": PROTOCOL_NAME, "version": "1.0", "role": "game", "name": "g",
                  "num_actions": 21, "action_layout": "arena-21", "state_dim": 4,
                  "frame_format": {"width": 4, "height": 4, "encoding": "png"}}),
        ("agent", {"type": "step", "action": {"discrete": 3, "move": [0.5, -1], "aim": [0, 0],
                                              "buttons": {"dash": True, "fire": False},
                                              "ui_click": {"option": 1}}}),
        ("agent", {"type": "hello", "protocol": PROTOCOL_NAME, "version": "1.0", "role": "agent",
                   "frame_size": 64, "frame_encodings": ["png", "raw_rgb"]}),
        ("agent", {"type": "reset", "seed": 3, "options": {}}),
        ("agent", {"type": "error", "code": "timeout", "message": "m"}),
    ]
    rng = np.random.default_rng(0)
    verdicts = {True: 0, False: 0}
    for sender, base in bases:
        ref = reference_validator(sender, base["type"])
        assert ref.is_valid(base)
        for h in [base, *_mutations(base, rng, 400)]:
            expected = ref.is_valid(h) if h.get("type") == base["type"] else None
            try:
                validate_header(h, sender)
                fast = True
            except ProtocolError:
                fast = False
            if expected is not None:
                assert fast == expected, (h, ref.iter_errors(h))
                verdicts[expected] += 1
    assert verdicts[True] > 300 and verdicts[False] > 300  # both verdicts well exercised
