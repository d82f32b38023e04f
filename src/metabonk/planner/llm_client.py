"""Chat clients for System 2: any OpenAI-compatible endpoint over HTTP, and `make_client` choosing it or the
embedded model; both honour the `ChatClient` protocol of planner/chat.py."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx

from metabonk.common.errors import MetabonkError
from metabonk.planner.chat import ChatClient, LLMError, Message, chat_request


@dataclass
class OpenAIClient:
    """Client for `POST {url}/chat/completions` of any OpenAI-compatible server (llama.cpp, vLLM, hosted).

    `url` is the API base, e.g. ``http://127.0.0.1:8080/v1``; the API key is read from the environment
    variable `api_key_env` (none is sent if it is unset).
    """

    url: str
    model: str = "default"
    api_key_env: str = "METABONK_LLM_API_KEY"
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise MetabonkError(f"--llm-url must start with http:// or https:// (got '{self.url}')")
        self.url = self.url.rstrip("/")
        if not self.url.endswith("/v1"):
            self.url += "/v1"
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.Client(headers=headers, timeout=self.timeout_s)
        self.name = f"openai:{self.model}@{self.url}"

    def chat(
        self,
        messages: list[Message],
        *,
        schema: dict[str, Any] | None = None,
        temperature: float = 0.0,
        max_tokens: int = 64,
        seed: int | None = None,
        timeout_s: float | None = None,
    ) -> str:
        body = {"model": self.model, **chat_request(messages, schema, temperature, max_tokens, seed)}
        try:
            r = self._http.post(
                f"{self.url}/chat/completions",
                json=body,
                timeout=timeout_s if timeout_s is not None else self.timeout_s,
            )
            r.raise_for_status()
            doc = r.json()
            return str(doc["choices"][0]["message"]["content"] or "")
        except httpx.TimeoutException as e:
            raise LLMError(f"LLM at {self.url} timed out") from e
        except httpx.HTTPError as e:
            raise LLMError(f"LLM at {self.url} failed: {e}") from e
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise LLMError(f"LLM at {self.url} sent a reply that is not a chat completion: {e}") from e

    def close(self) -> None:
        self._http.close()


def make_client(
    llm_url: str | None = None,
    model: str = "default",
    api_key_env: str = "METABONK_LLM_API_KEY",
    timeout_s: float = 10.0,
    n_threads: int = 2,
    gguf: str | None = None,
) -> ChatClient:
    """The embedded model `gguf` (smollm2 | gemma3 | a path; default DEFAULT_MODEL) when `llm_url` is None,
    else an OpenAI-compatible client for that URL."""
    if llm_url:
        return OpenAIClient(llm_url, model=model, api_key_env=api_key_env, timeout_s=timeout_s)
    from metabonk.planner.embedded import EmbeddedClient

    return EmbeddedClient(model_path=gguf, n_threads=n_threads)
