"""JSON schemas of every System 2 answer and the validator that turns raw LLM text into checked dicts."""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from metabonk.common.intents import INTENTS

MAX_THOUGHT_CHARS = 240


class InvalidAnswer(ValueError):
    """The model's text is not JSON or does not match the schema; the caller falls back and counts it."""


def card_schema(options: list[str], reasoning: bool = False) -> dict[str, Any]:
    """Schema of a card choice among the offered upgrade names (an enum, so a grammar can enforce it)."""
    props: dict[str, Any] = {"card": {"type": "string", "enum": list(dict.fromkeys(options))}}
    required = ["card"]
    if reasoning:
        # Thoughts first so the model reasons before it commits to an answer.
        props = {"thoughts": {"type": "string", "maxLength": MAX_THOUGHT_CHARS}, **props}
        required = ["thoughts", "card"]
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


def intent_schema(reasoning: bool = False) -> dict[str, Any]:
    """Schema of an intent for System 1 (one of metabonk.common.intents.INTENTS)."""
    props: dict[str, Any] = {"intent": {"type": "string", "enum": list(INTENTS)}}
    required = ["intent"]
    if reasoning:
        props = {"thoughts": {"type": "string", "maxLength": MAX_THOUGHT_CHARS}, **props}
        required = ["thoughts", "intent"]
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


REFLECTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "lesson": {"type": "string", "minLength": 8, "maxLength": 200},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 32}, "maxItems": 4},
    },
    "required": ["lesson", "tags"],
    "additionalProperties": False,
}
"""A Reflexion-style lesson written after an episode."""


def parse_answer(text: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Parse `text` as JSON (tolerating prose around one JSON object) and validate it against `schema`."""
    doc = _extract_json(text)
    try:
        jsonschema.validate(doc, schema)
    except jsonschema.ValidationError as e:
        raise InvalidAnswer(f"answer does not match schema: {e.message}") from e
    return doc


def _extract_json(text: str) -> Any:
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise InvalidAnswer(f"answer is not JSON: {text[:80]!r}")
    try:
        return json.loads(text[start : end + 1])
    except json.JSONDecodeError as e:
        raise InvalidAnswer(f"answer is not JSON ({e.msg}): {text[:80]!r}") from e
