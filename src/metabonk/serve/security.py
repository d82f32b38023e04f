"""Who may do what: hashed write tokens, loopback-only reads, request size limits, and checked paths."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request, WebSocket
from sqlalchemy import select

from metabonk.serve.db import Database, Token, now

TOKEN_PREFIX = "mbk_"
_CACHE_S = 5.0


def digest(secret: str) -> str:
    """SHA-256 of a token: tokens are 256 random bits, so a fast hash is enough (no password stretching needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(db: Database, name: str = "default") -> str:
    """Make a write token; only its digest is stored, so the returned secret is shown once."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with db.session() as s:
        s.add(Token(name=name[:64], digest=digest(secret), created_at=now(), revoked=False))
    return secret


class TokenChecker:
    """Checks bearer tokens against the database, remembering answers for a few seconds (frames are many)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache: dict[str, tuple[bool, float]] = {}

    def valid(self, secret: str | None) -> bool:
        if not secret or not secret.startswith(TOKEN_PREFIX) or len(secret) > 128:
            return False
        d = digest(secret)
        hit = self._cache.get(d)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        with self.db.session() as s:
            row = s.scalars(select(Token).where(Token.digest == d)).first()
        ok = row is not None and not row.revoked and hmac.compare_digest(row.digest, d)
        if len(self._cache) > 1024:
            self._cache.clear()
        self._cache[d] = (ok, time.monotonic() + _CACHE_S)
        return ok


def bearer(conn: Request | WebSocket) -> str | None:
    auth = conn.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return conn.query_params.get("token")


def is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_write(request: Request) -> None:
    """Dependency of every write route: a valid token or 401."""
    if not request.app.state.svc.tokens.valid(bearer(request)):
        raise HTTPException(401, "a valid token is needed (create one with `metabonk serve token create`)",
                            headers={"WWW-Authenticate": "Bearer"})


def may_read(conn: Request | WebSocket) -> bool:
    svc = conn.app.state.svc
    host = conn.client.host if conn.client else None
    return svc.config.open_reads or is_loopback(host) or svc.tokens.valid(bearer(conn))


def require_read(request: Request) -> None:
    """Dependency of every read route: loopback, --open-reads, or a token."""
    if not may_read(request):
        raise HTTPException(401, "reads from other hosts need a token (or start the server with --open-reads)",
                            headers={"WWW-Authenticate": "Bearer"})


def inside(root: Path, *parts: str) -> Path:
    """root/parts, refused unless it resolves inside root (names are also pattern-checked by the schemas)."""
    for p in parts:
        if not p or p in (".", "..") or "/" in p or "\\" in p or "\x00" in p or p.startswith("."):
            raise HTTPException(400, f"invalid name {p!r}")
    path = root.joinpath(*parts)
    if not path.resolve().is_relative_to(root.resolve()):
        raise HTTPException(400, "path escapes the data folder")
    return path


class BodyTooLarge(Exception):
    pass


class SizeLimit:
    """ASGI middleware: a request body larger than its route's limit gets 413, by header or while it streams."""

    def __init__(self, app: Any, limits: list[tuple[str, int]], default: int) -> None:
        self.app = app
        self.limits = limits  # (path prefix, bytes), first match wins
        self.default = default

    def limit_for(self, path: str) -> int:
        return next((n for prefix, n in self.limits if path.startswith(prefix) and _upload_path(path)), self.default)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _reply_413(send, limit)
            return
        seen = 0
        started = False

        async def counted_receive() -> Any:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge
            return msg

        async def tracked_send(msg: Any) -> None:
            nonlocal started
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await _reply_413(send, limit)


def _upload_path(path: str) -> bool:
    return path.endswith(("/episodes", "/versions")) or "/artifacts/" in path


async def _reply_413(send: Any, limit: int) -> None:
    body = f'{{"detail":"request body over the limit of {limit} bytes"}}'.encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

