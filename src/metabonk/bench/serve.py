"""`metabonk bench serve`: simulated workers on loopback streaming frames and uploading episodes to a real
orchestrator process; request latency, frames delivered to viewers, and the integrity of every episode."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

STORE = "bench"


@dataclass
class ServeBenchArgs:
    workers: int = 16
    seconds: float = 120.0
    fps: float = 30.0
    episode_every_s: float = 2.0
    episode_steps: int = 32
    frame_size: int = 64
    db_url: str | None = None
    json_path: str | None = None
    workdir: str | None = None


@dataclass
class Tally:
    latency_s: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    accepted: dict[str, str] = field(default_factory=dict)  # upload_id -> sha256 of the obs bytes sent
    frames_pushed: Counter[str] = field(default_factory=Counter)
    frames_viewed: Counter[str] = field(default_factory=Counter)
    push_span: dict[str, list[float]] = field(default_factory=dict)  # worker -> [first send, last send] (s)

    def took(self, kind: str, dt: float) -> None:
        self.latency_s.setdefault(kind, []).append(dt)


def _jpegs(size: int, n: int = 8) -> list[bytes]:
    from metabonk.serve.worker_client import encode_jpeg

    rng = np.random.default_rng(0)
    return [encode_jpeg(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


async def _worker(i: int, url: str, token: str, args: ServeBenchArgs, tally: Tally, end: float) -> None:
    import httpx
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from metabonk.serve.worker_client import episode_bytes

    name = f"w{i:02d}"
    auth = {"Authorization": f"Bearer {token}"}
    jpegs = _jpegs(args.frame_size)
    rng = np.random.default_rng(100 + i)
    async with httpx.AsyncClient(base_url=url, headers=auth, timeout=60) as http:

        async def call(kind: str, method: str, path: str, **kw: Any) -> httpx.Response | None:
            t0 = time.perf_counter()
            for attempt in range(3):  # a transport error is retried, as metabonk.serve.client does (idempotent)
                try:
                    r = await http.request(method, path, **kw)
                    break
                except httpx.TransportError as e:
                    if attempt == 2:
                        tally.errors[f"{kind}: {type(e).__name__}"] += 1
                        return None
                    tally.retries[f"{kind}: {type(e).__name__}"] += 1
            tally.took(kind, time.perf_counter() - t0)
            if r.status_code >= 400:
                tally.errors[f"{kind}: {r.status_code}"] += 1
                return None
            return r

        await call("register", "POST", "/api/workers", json={"name": name, "env": "bench"})

        async def frames() -> None:
            ws_url = url.replace("http://", "ws://") + f"/ws/workers/{name}/frames"
            k = 0
            while time.monotonic() < end:  # a dropped socket is counted and reconnected, as a worker would
                try:
                    async with connect(ws_url, additional_headers=auth, max_size=None, ping_interval=None) as ws:
                        nxt = time.perf_counter()
                        while time.monotonic() < end:
                            await ws.send(jpegs[k % len(jpegs)])
                            tally.frames_pushed[name] += 1
                            now = time.monotonic()
                            tally.push_span.setdefault(name, [now, now])[1] = now
                            k += 1
                            nxt += 1.0 / args.fps
                            await asyncio.sleep(max(0.0, nxt - time.perf_counter()))
                except (ConnectionClosed, OSError) as e:
                    tally.errors[f"frames: {type(e).__name__}"] += 1

        async def beats() -> None:
            step = 0
            while time.monotonic() < end:
                step += 30
                await call("heartbeat", "POST", f"/api/workers/{name}/heartbeat",
                           json={"state": {"intent": "kite", "fps": args.fps, "step": step}})
                await asyncio.sleep(min(1.0, max(0.0, end - time.monotonic())))  # no idle tail after the window

        async def episodes() -> None:
            await asyncio.sleep(rng.uniform(0, args.episode_every_s))
            T, s = args.episode_steps, args.frame_size
            while time.monotonic() < end:
                obs = rng.integers(0, 255, (T + 1, s, s, 3), dtype=np.uint8)
                body = episode_bytes({"obs": obs, "action": rng.integers(0, 4, T),
                                      "reward": rng.standard_normal(T).astype(np.float32)}, {"worker": name})
                upload_id = uuid.uuid4().hex
                r = await call("episode", "POST", f"/api/stores/{STORE}/episodes", content=body,
                               params={"upload_id": upload_id, "worker": name})
                if r is not None:
                    tally.accepted[upload_id] = hashlib.sha256(obs.tobytes()).hexdigest()
                # no idle tail after the load window: it would stretch the wall time the rates are divided by
                await asyncio.sleep(min(args.episode_every_s, max(0.0, end - time.monotonic())))

        await asyncio.gather(frames(), beats(), episodes())


async def _viewer(name: str, url: str, tally: Tally, end: float) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    while time.monotonic() < end:
        try:
            async with connect(url.replace("http://", "ws://") + f"/ws/workers/{name}/view", max_size=None,
                               ping_interval=None) as ws:
                while time.monotonic() < end:
                    try:
                        await asyncio.wait_for(ws.recv(), timeout=max(0.05, end - time.monotonic()))
                    except TimeoutError:
                        return
                    tally.frames_viewed[name] += 1
        except (ConnectionClosed, OSError) as e:
            tally.errors[f"viewer: {type(e).__name__}"] += 1


async def _load(url: str, token: str, args: ServeBenchArgs, tally: Tally) -> float:
    import httpx

    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
        r = await http.put(f"/api/stores/{STORE}", json={"env_spec": "bench", "num_actions": 4,
                                                         "frame_size": args.frame_size})
        r.raise_for_status()
    t0 = time.monotonic()
    end = t0 + args.seconds
    names = [f"w{i:02d}" for i in range(args.workers)]
    await asyncio.gather(*[_worker(i, url, token, args, tally, end) for i in range(args.workers)],
                         *[_viewer(n, url, tally, end) for n in names])
    return time.monotonic() - t0


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1e3, q)) if xs else 0.0


def check_integrity(data: Path, db_url: str | None, accepted: dict[str, str]) -> dict[str, int]:
    """Every accepted upload in the store exactly once with the bytes sent; the index matches the store."""
    from sqlalchemy import func, select

    from metabonk.data.store import EpisodeStore
    from metabonk.serve.config import ServeConfig
    from metabonk.serve.db import Database, Episode

    store = EpisodeStore.open(data / "stores" / STORE)
    seen: Counter[str] = Counter()
    corrupt = 0
    for i in range(len(store)):
        uid = str(store.episode_meta(i).get("upload_id", ""))
        seen[uid] += 1
        want = accepted.get(uid)
        if want is not None and hashlib.sha256(store.episode(i, ["obs"])["obs"].tobytes()).hexdigest() != want:
            corrupt += 1
    db = Database(ServeConfig(data=data, db_url=db_url).url)
    try:
        with db.session() as s:
            indexed = int(s.scalar(select(func.count()).select_from(Episode).where(Episode.store == STORE)) or 0)
    finally:
        db.close()
    return {"accepted": len(accepted), "in_store": len(store), "indexed": indexed,
            "lost": sum(1 for u in accepted if seen[u] == 0), "duplicated": sum(1 for u in accepted if seen[u] > 1),
            "unexpected": sum(n for u, n in seen.items() if u not in accepted), "corrupt": corrupt}


def _stream_rate(tally: Tally) -> float:
    """Mean over workers of (frames sent - 1) / (last send - first send): the rate a worker streams at."""
    rates = [(tally.frames_pushed[n] - 1) / (b - a) for n, (a, b) in tally.push_span.items() if b > a]
    return float(np.mean(rates)) if rates else 0.0


def run_load(args: ServeBenchArgs) -> dict[str, Any]:
    """Start a server process, load it for `args.seconds`, stop it, check the store; the figures."""
    from metabonk.serve.process import ServerProcess, make_token

    load_before = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="metabonk-serve-bench-", dir=args.workdir))
    try:
        data = root / "data"
        token = make_token(data, args.db_url)
        tally = Tally()
        with ServerProcess(data, args.db_url) as server:
            wall = asyncio.run(_load(server.url, token, args, tally))
        integrity = check_integrity(data, args.db_url, tally.accepted)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    every = [x for xs in tally.latency_s.values() for x in xs]
    pushed, viewed = sum(tally.frames_pushed.values()), sum(tally.frames_viewed.values())
    out: dict[str, Any] = {
        "workers": args.workers, "seconds": wall, "target_fps_per_worker": args.fps,
        "database": "postgresql" if args.db_url and args.db_url.startswith("postgresql") else "sqlite",
        "requests": len(every), "request_p50_ms": _pct(every, 50), "request_p99_ms": _pct(every, 99),
        "frames_pushed_per_s": pushed / wall, "frames_pushed_per_worker_per_s": pushed / wall / max(args.workers, 1),
        # the same frames over each worker's own stream, first send to last: the window above also holds the
        # worker's registration and socket connect before its first frame
        "frames_streamed_per_worker_per_s": _stream_rate(tally),
        "frames_to_viewers_per_s": viewed / wall, "frames_to_one_viewer_per_s": viewed / wall / max(args.workers, 1),
        "errors": dict(tally.errors), "retries": dict(tally.retries), "integrity": integrity,
        # the clients and the server share this machine's cores with whatever else runs: say how busy it was
        "load_average_1min_before": load_before, "load_average_1min_after": os.getloadavg()[0],
        "cpu_count": os.cpu_count(),
    }
    for kind, xs in sorted(tally.latency_s.items()):
        out[f"{kind}_p50_ms"], out[f"{kind}_p99_ms"], out[f"{kind}_count"] = _pct(xs, 50), _pct(xs, 99), len(xs)
    return out


def main(args: ServeBenchArgs) -> Path:
    from rich.console import Console
    from rich.table import Table

    from metabonk.common.results import write_result

    res = run_load(args)
    table = Table(title=f"orchestrator load: {args.workers} workers × {args.fps:.0f} fps, {res['seconds']:.0f} s, "
                        f"{res['database']}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for k in ("request_p50_ms", "request_p99_ms", "heartbeat_p99_ms", "episode_p50_ms", "episode_p99_ms",
              "frames_pushed_per_worker_per_s", "frames_streamed_per_worker_per_s",
              "frames_to_one_viewer_per_s", "frames_to_viewers_per_s"):
        if k in res:
            table.add_row(k, f"{res[k]:.2f}")
    for k, v in res["integrity"].items():
        table.add_row(f"episodes {k}", str(v))
    table.add_row("errors", str(sum(res["errors"].values())))
    Console(soft_wrap=True).print(table)
    return write_result(args.json_path or "benchmarks/results/serve-cpu.json", res)
