"""The chat contract every System 2 client honours: messages, the `ChatClient` protocol, the failure it raises
(`LLMError`) and the OpenAI chat-completion arguments (`chat_request`). Clients (llm_client.OpenAIClient,
embedded.EmbeddedClient) import it; it imports neither."""

from __future__ import annotations

from typing import Any, Protocol

Message = dict[str, str]


class LLMError(RuntimeError):
    """The model could not answer (connection refused, HTTP error, timeout); the planner falls back."""


class ChatClient(Protocol):
    """Anything that turns chat messages into one completion text, optionally constrained by a JSON schema."""

    name: str

    def chat(
        self,
        messages: list[Message],
        *,
        schema: dict[str, Any] | None = None,
        temperature: float = 0.0,
        max_tokens: int = 64,
        seed: int | None = None,
        timeout_s: float | None = None,
    ) -> str: ...


def response_format(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """The `response_format` llama.cpp and vLLM honour: json_object WITH a schema (a bare one is useless)."""
    if schema is None:
        return None
    return {"type": "json_object", "schema": schema}


def chat_request(
    messages: list[Message], schema: dict[str, Any] | None, temperature: float, max_tokens: int, seed: int | None
) -> dict[str, Any]:
    """The OpenAI chat-completion arguments both clients send (HTTP body, or llama.cpp's keyword arguments)."""
    req: dict[str, Any] = {"messages": messages, "temperature": temperature, "max_tokens": max_tokens}
    fmt = response_format(schema)
    if fmt is not None:
        req["response_format"] = fmt
    if seed is not None:
        req["seed"] = seed
    return req
