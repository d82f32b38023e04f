"""JSON schemas of every bridge message header, by sender ("agent" = MetaBonk, "game" = the game/plugin).

Unknown extra fields are allowed everywhere (a minor version may add optional fields); required fields,
types and ranges are enforced. `validate_header(header, sender)` raises ProtocolError("bad_schema"). The
schemas are checked as Draft 2020-12 by jsonschema and run through `fastcheck` (same verdicts, ~100x faster).
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from metabonk.envs.bridge.fastcheck import Check, compile_schema
from metabonk.envs.bridge.protocol import ERROR_CODES, PROTOCOL_NAME, ProtocolError

FRAME_ENCODINGS = ("png", "jpeg", "raw_rgb")
BUTTONS = ("fire", "ability", "interact", "jump", "dash")
MAX_SIDE = 8192

_num = {"type": "number"}
_vec2 = {"type": "array", "items": _num, "minItems": 2, "maxItems": 2}
_vec23 = {"type": "array", "items": _num, "minItems": 2, "maxItems": 3}
_unit = {"type": "number", "minimum": -1, "maximum": 1}
_unit2 = {"type": "array", "items": _unit, "minItems": 2, "maxItems": 2}
_count = {"type": "integer", "minimum": 0}
_version = {"type": "string", "pattern": r"^[0-9]+\.[0-9]+$"}

FRAME = {
    "type": "object",
    "required": ["encoding", "width", "height", "bytes"],
    "properties": {
        "encoding": {"enum": list(FRAME_ENCODINGS)},
        "width": {"type": "integer", "minimum": 1, "maximum": MAX_SIDE},
        "height": {"type": "integer", "minimum": 1, "maximum": MAX_SIDE},
        "bytes": _count,
    },
}

ENEMY = {
    "type": "object",
    "required": ["position"],
    "properties": {
        "position": _vec23, "velocity": _vec23, "health": _num, "max_health": _num,
        "kind": {"type": "string"}, "elite": {"type": "boolean"}, "boss": {"type": "boolean"},
    },
}

LEVEL_UP_OPTION = {
    "type": "object",
    "required": ["index"],
    "properties": {
        "index": _count, "id": {"type": ["string", "integer"]},
        "name": {"type": "string"}, "description": {"type": "string"},
    },
}

GAME_STATE = {
    "type": "object",
    "properties": {
        "player": {
            "type": "object",
            "properties": {
                "position": _vec23, "velocity": _vec23, "health": _num, "max_health": _num,
                "level": _count, "xp": _num, "xp_next": _num, "gold": _num,
            },
        },
        "time": {"type": "number", "minimum": 0},
        "playing": {"type": "boolean"},
        "paused": {"type": "boolean"},
        "scene": {"type": "string"},
        "menu": {"type": ["string", "null"]},
        "enemies": {"type": "array", "items": ENEMY},
        "level_up_options": {"type": "array", "items": LEVEL_UP_OPTION},
        "screen": {"type": "object", "properties": {"width": _count, "height": _count}},
    },
}

ACTION = {
    "type": "object",
    "minProperties": 1,
    "properties": {
        "discrete": _count,
        "move": _unit2,
        "aim": _unit2,
        "buttons": {"type": "object", "properties": {b: {"type": "boolean"} for b in BUTTONS},
                    "additionalProperties": {"type": "boolean"}},
        "ui_click": {
            "oneOf": [
                {"type": "object", "required": ["option"], "properties": {"option": _count}},
                {"type": "object", "required": ["x", "y"],
                 "properties": {"x": {"type": "number", "minimum": 0, "maximum": 1},
                                "y": {"type": "number", "minimum": 0, "maximum": 1}}},
            ]
        },
    },
}

_INFO_VALUE: dict[str, Any] = {"type": ["number", "boolean", "integer", "array"]}

_HELLO_COMMON = {
    "protocol": {"const": PROTOCOL_NAME},
    "version": _version,
    "name": {"type": "string", "maxLength": 200},
}

SCHEMAS: dict[str, dict[str, dict[str, Any]]] = {
    "agent": {
        "hello": {
            "required": ["protocol", "version", "role"],
            "properties": {
                **_HELLO_COMMON, "role": {"const": "agent"},
                "frame_size": {"type": "integer", "minimum": 1, "maximum": MAX_SIDE},
                # names this version does not know are allowed (a later minor may add some); the game picks
                # the first it knows
                "frame_encodings": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            },
        },
        "reset": {"properties": {"seed": {"type": ["integer", "null"], "minimum": 0, "maximum": 2**63 - 1},
                                 "options": {"type": "object"}}},
        "step": {"required": ["action"], "properties": {"action": ACTION}},
    },
    "game": {
        "hello": {
            "required": ["protocol", "version", "role"],
            "properties": {
                **_HELLO_COMMON, "role": {"const": "game"},
                "num_actions": {"type": "integer", "minimum": 1},
                "action_layout": {"type": "string"},
                "state_dim": {"type": "integer", "minimum": 1},
                "frame_format": {"type": "object", "properties": {"width": _count, "height": _count,
                                                           "encoding": {"enum": list(FRAME_ENCODINGS)}}},
            },
        },
        "obs": {
            "required": ["reward", "terminated", "truncated", "state", "frame"],
            "properties": {
                "episode": _count, "step": _count, "reward": _num,
                "terminated": {"type": "boolean"}, "truncated": {"type": "boolean"},
                "state": GAME_STATE, "vector": {"type": "array", "items": _num},
                "info": {"type": "object", "additionalProperties": _INFO_VALUE},
                "frame": FRAME,
            },
        },
    },
}
for _sender in SCHEMAS.values():
    _sender["close"] = {"properties": {"reason": {"type": "string"}}}
    _sender["error"] = {"required": ["code", "message"],
                        "properties": {"code": {"enum": list(ERROR_CODES)}, "message": {"type": "string"}}}

FULL_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {}
_CHECKS: dict[tuple[str, str], Check] = {}
for _who, _types in SCHEMAS.items():
    for _t, _s in _types.items():
        _full = {"type": "object", **_s, "required": ["type", *_s.get("required", [])]}
        _full["properties"] = {"type": {"const": _t}, **_s.get("properties", {})}
        Draft202012Validator.check_schema(_full)
        FULL_SCHEMAS[(_who, _t)] = _full
        _CHECKS[(_who, _t)] = compile_schema(_full)


def reference_validator(sender: str, kind: str) -> Draft202012Validator:
    """The jsonschema validator of one message type (the reference the fast checks are tested against)."""
    return Draft202012Validator(FULL_SCHEMAS[(sender, kind)])


def validate_header(header: dict[str, Any], sender: str) -> None:
    """Check `header` against the schema of its type for messages sent by `sender` ('agent' or 'game')."""
    kind = header.get("type")
    check = _CHECKS.get((sender, kind)) if isinstance(kind, str) else None
    if check is None:
        allowed = ", ".join(sorted(SCHEMAS[sender]))
        raise ProtocolError("bad_schema",
                            f"unknown message type {kind!r} from the {sender} (allowed: {allowed})")
    error = check(header)
    if error is not None:
        raise ProtocolError("bad_schema", f"'{kind}' message from the {sender}: {str(error)[:300]}")
