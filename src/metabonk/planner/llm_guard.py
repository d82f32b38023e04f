"""The embedded LLM server of `metabonk serve-llm`: llama.cpp's OpenAI-compatible app behind a guard.

llama-cpp-python's server answers any web page (CORS `*` with credentials), reads bodies of any size and turns
malformed JSON into an HTTP 500 that shows server file paths. `guard` is a small ASGI layer in front of it:
an optional API key (`Authorization: Bearer KEY`, compared in constant time), no CORS unless origins are
named, a request size limit checked before and while the body is read, and a 400 for a body that is not JSON.
Run it as `python -m metabonk.planner.llm_guard --model GGUF ...`; the key comes from $METABONK_LLM_API_KEY,
never from the command line (where `ps` would show it).
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

API_KEY_ENV = "METABONK_LLM_API_KEY"
MAX_BODY_BYTES = 1 << 20
"""1 MiB: a System 2 prompt is a few KB; the context window holds far less than this anyway."""


async def _reply(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": {"message": message, "code": status}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def guard(app: ASGIApp, api_key: str | None = None, max_body: int = MAX_BODY_BYTES) -> ASGIApp:
    """`app` behind the key check, the body size limit and the JSON check (HTTP requests only)."""
    expected = f"Bearer {api_key}".encode() if api_key else None

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if expected is not None and not hmac.compare_digest(headers.get(b"authorization", b""), expected):
            await _reply(send, 401, "missing or wrong API key (send Authorization: Bearer KEY)")
            return
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > max_body):
            await _reply(send, 413, f"request body over the {max_body}-byte limit")
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > max_body:
                await _reply(send, 413, f"request body over the {max_body}-byte limit")
                return
            if not message.get("more_body", False):
                break
        if body and scope.get("method") in ("POST", "PUT", "PATCH"):
            try:
                json.loads(body)
            except (ValueError, UnicodeDecodeError):
                await _reply(send, 400, "request body is not valid JSON")
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await app(scope, replay, send)

    return guarded


def llama_app(model: str, alias: str, n_threads: int, n_ctx: int, api_key: str | None = None,
              cors_origins: list[str] | None = None, max_body: int = MAX_BODY_BYTES) -> ASGIApp:
    """llama.cpp's app for GGUF `model` without its allow-everything CORS (or with exactly `cors_origins`,
    no credentials), behind `guard`."""
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings
    from starlette.middleware.cors import CORSMiddleware

    app = create_app(server_settings=ServerSettings(),
                     model_settings=[ModelSettings(model=model, model_alias=alias, n_threads=n_threads,
                                                   n_ctx=n_ctx, verbose=False)])
    app.user_middleware = [m for m in app.user_middleware if m.cls is not CORSMiddleware]
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_credentials=False,
                           allow_methods=["GET", "POST"], allow_headers=["authorization", "content-type"])
    return guard(app, api_key=api_key, max_body=max_body)


def main(argv: list[str] | None = None) -> None:
    """`python -m metabonk.planner.llm_guard`: serve a GGUF model on HOST:PORT until SIGTERM / Ctrl-C."""
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--model", required=True)
    p.add_argument("--model_alias", default="smollm2")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--n_threads", type=int, default=2)
    p.add_argument("--n_ctx", type=int, default=2048)
    p.add_argument("--max_body_bytes", type=int, default=MAX_BODY_BYTES)
    p.add_argument("--cors_origin", action="append", default=[])
    args = p.parse_args(argv)
    app = llama_app(args.model, args.model_alias, args.n_threads, args.n_ctx,
                    api_key=os.environ.get(API_KEY_ENV) or None, cors_origins=args.cors_origin,
                    max_body=args.max_body_bytes)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
