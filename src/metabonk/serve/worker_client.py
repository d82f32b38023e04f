"""A playing worker's side of the orchestrator: register, heartbeats, live frames, episode and model uploads.

    orch = Orchestrator(url, token)
    w = WorkerReporter(orch, "arena-0", env="arena", policy="runs/x/policy")
    w.frame(pixels_HW3)                      # newest frame wins; dropped while the server is away
    w.heartbeat(intent="kite", fps=58.0, cards=["armor"], fallbacks=1)
    w.episode({"obs": ..., "action": ..., "reward": ...}, store="arena-live", meta={"seed": 3})
    w.close()
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from metabonk.common.errors import MetabonkError
from metabonk.serve.client import Orchestrator, new_key


def encode_jpeg(frame_HW3: np.ndarray, quality: int = 80, min_side: int = 0) -> bytes:
    """A uint8 HxWx3 frame as JPEG bytes (scaled up by an integer factor to at least `min_side` pixels)."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(frame_HW3, dtype=np.uint8))
    if min_side and min(img.size) < min_side:
        k = -(-min_side // min(img.size))
        img = img.resize((img.size[0] * k, img.size[1] * k), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def episode_bytes(arrays: dict[str, np.ndarray], meta: dict[str, Any] | None = None) -> bytes:
    """An episode as the safetensors body `POST /api/stores/NAME/episodes` takes."""
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata={"meta": json.dumps(meta or {})})


class FramePusher:
    """Sends the newest frame over the worker's WebSocket from its own thread; reconnects every `retry_s`."""

    def __init__(self, orch: Orchestrator, worker: str, retry_s: float = 2.0) -> None:
        base = orch.url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        self.url = f"{base}/ws/workers/{worker}/frames"
        self.headers = {"Authorization": f"Bearer {orch.token}"} if orch.token else {}
        self.retry_s = retry_s
        self.sent = self.dropped = 0
        self._frame: bytes | None = None
        self._cv = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name=f"frames-{worker}", daemon=True)
        self._thread.start()

    def push(self, jpeg: bytes) -> None:
        with self._cv:
            if self._frame is not None:
                self.dropped += 1  # the previous one was never sent: only the newest matters
            self._frame = jpeg
            self._cv.notify()

    def _loop(self) -> None:
        from websockets.exceptions import WebSocketException
        from websockets.sync.client import connect

        ws = None
        next_try = 0.0
        while True:
            with self._cv:
                while self._frame is None and not self._stop:
                    self._cv.wait()
                if self._stop:
                    break
                frame, self._frame = self._frame, None
            if ws is None:
                if time.monotonic() < next_try:
                    self.dropped += 1
                    continue
                try:
                    ws = connect(self.url, additional_headers=self.headers, open_timeout=3, max_size=None)
                except (OSError, WebSocketException, TimeoutError):
                    next_try = time.monotonic() + self.retry_s
                    self.dropped += 1
                    continue
            try:
                ws.send(frame)
                self.sent += 1
            except (OSError, WebSocketException):
                ws, next_try = None, time.monotonic() + self.retry_s
                self.dropped += 1
        if ws is not None:
            ws.close()

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(timeout=5)


class WorkerReporter:
    """One worker: registered at start, then heartbeats (coalesced), frames (live) and episodes (queued)."""

    def __init__(self, orch: Orchestrator, name: str, env: str = "", policy: str = "",
                 heartbeat_every_s: float = 1.0, frame_min_side: int = 256) -> None:
        self.orch, self.name = orch, name
        self.heartbeat_every_s = heartbeat_every_s
        self.frame_min_side = frame_min_side
        self._last_beat = 0.0
        self._stores: set[str] = set()
        self.frames = FramePusher(orch, name)
        orch.send("POST", "/api/workers", json={"name": name, "env": env[:256], "policy": policy[:256],
                                                "host": socket.gethostname()[:128]})

    def heartbeat(self, force: bool = False, **state: Any) -> None:
        """Report the worker's state (intent, fps, step, cards, fallbacks, ...), at most once per interval."""
        t = time.monotonic()
        if not force and t - self._last_beat < self.heartbeat_every_s:
            return
        self._last_beat = t
        self.orch.send("POST", f"/api/workers/{self.name}/heartbeat", json={"state": state},
                       coalesce=f"heartbeat:{self.name}")

    def frame(self, image: np.ndarray | bytes) -> None:
        self.frames.push(image if isinstance(image, bytes) else encode_jpeg(image, min_side=self.frame_min_side))

    def ensure_store(self, store: str, env_spec: str, num_actions: int | None, frame_size: int) -> None:
        if store not in self._stores:
            self.orch.send("PUT", f"/api/stores/{store}", json={"env_spec": env_spec, "num_actions": num_actions,
                                                                 "frame_size": frame_size})
            self._stores.add(store)

    def episode(self, arrays: dict[str, np.ndarray], store: str, meta: dict[str, Any] | None = None,
                run: str = "") -> str:
        """Queue one finished episode for upload; returns its upload id (the server keeps it exactly once)."""
        upload_id = new_key()
        params = {"upload_id": upload_id, "worker": self.name}
        if run:
            params["run"] = run
        self.orch.send("POST", f"/api/stores/{store}/episodes", content=episode_bytes(arrays, meta), params=params)
        return upload_id

    def close(self) -> None:
        self.frames.close()


def upload_checkpoint(orch: Orchestrator, name: str, ckpt: str | Path, note: str = "") -> dict[str, Any]:
    """Upload a checkpoint directory (model.safetensors + config.json) as the next version of model `name`."""
    from safetensors.torch import load_file, save

    from metabonk.common.checkpoint import CONFIG, WEIGHTS

    ckpt = Path(ckpt)
    if not (ckpt / WEIGHTS).is_file():
        raise MetabonkError(f"{ckpt} is not a checkpoint directory (no {WEIGHTS})")
    config = (ckpt / CONFIG).read_text() if (ckpt / CONFIG).is_file() else "{}"
    body = save(load_file(str(ckpt / WEIGHTS)), metadata={"config": config})
    return orch.request("POST", f"/api/models/{name}/versions", content=body, params={"note": note}).json()


def download_checkpoint(orch: Orchestrator, name: str, dest: str | Path, which: str = "promoted",
                        version: int | None = None) -> Path:
    """Fetch a model version into `dest` as a checkpoint directory (written to a temp dir, then renamed)."""
    import os
    import tempfile

    from safetensors import safe_open

    from metabonk.common.checkpoint import CONFIG, WEIGHTS

    params: dict[str, Any] = {"which": which} if version is None else {"version": version}
    dest = Path(dest)
    if dest.exists():
        raise MetabonkError(f"{dest} exists; choose a new folder for the downloaded checkpoint")
    r = orch.request("GET", f"/api/models/{name}/download", params=params)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    (tmp / WEIGHTS).write_bytes(r.content)
    with safe_open(str(tmp / WEIGHTS), framework="np") as f:
        config = (f.metadata() or {}).get("config", "{}")
    (tmp / CONFIG).write_text(config)
    os.rename(tmp, dest)
    return dest
