"""Model checkpoints: safetensors weights + JSON config, written to a temp dir then renamed into place.

Layout of a checkpoint directory::

    CKPT/model.safetensors   weights (no pickle)
    CKPT/config.json         {"kind": ..., "config": {...dataclass fields...}, "meta": {...}}
    CKPT/trainer.pt          optional optimizer/progress state, loaded with weights_only=True
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

import torch
from safetensors.torch import load_file, save_file

from metabonk.common.errors import MetabonkError

C = TypeVar("C")

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TRAINER = "trainer.pt"


def config_to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain JSON-able dict (nested dataclasses included)."""
    return dataclasses.asdict(config)


def config_from_dict(cls: type[C], data: dict[str, Any]) -> C:
    """Build a config dataclass from a dict, ignoring unknown keys and keeping defaults for missing ones."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names}
    return cls(**kwargs)


def _atomic_dir_write(path: Path, write: Any) -> None:
    """Write into a fresh temp dir beside `path`, then swap it in; a crash never leaves a half checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        write(tmp)
        if path.is_dir():
            # Keep what lives beside the weights (TensorBoard logs, reports): only our own files are replaced.
            for entry in path.iterdir():
                if entry.name not in (WEIGHTS, CONFIG, TRAINER) and not (tmp / entry.name).exists():
                    os.rename(entry, tmp / entry.name)
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.rename(path, old)
        os.rename(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    config: Any,
    kind: str,
    meta: dict[str, Any] | None = None,
    trainer_state: dict[str, Any] | None = None,
) -> Path:
    """Save `model` weights and its config dataclass atomically to directory `path`."""
    path = Path(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    # safetensors refuses tensors that share storage; clone breaks the aliasing.
    state = {k: v.clone() for k, v in state.items()}

    def write(tmp: Path) -> None:
        save_file(state, str(tmp / WEIGHTS))
        doc = {"kind": kind, "config": config_to_dict(config), "meta": meta or {}}
        (tmp / CONFIG).write_text(json.dumps(doc, indent=2))
        if trainer_state is not None:
            torch.save(trainer_state, tmp / TRAINER)

    _atomic_dir_write(path, write)
    return path


def read_config(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Read a checkpoint's config.json; checks the model kind when given."""
    path = Path(path)
    cfg_file = path / CONFIG
    if not cfg_file.is_file():
        raise MetabonkError(f"{path} is not a MetaBonk checkpoint (no {CONFIG})")
    try:
        doc = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise MetabonkError(f"{cfg_file} is not valid JSON: {e}") from e
    if kind is not None and doc.get("kind") != kind:
        raise MetabonkError(f"{path} holds a '{doc.get('kind')}' model, expected '{kind}'")
    return doc


def load_weights(path: str | Path, model: torch.nn.Module, device: str | torch.device = "cpu") -> None:
    """Load safetensors weights from checkpoint dir `path` into `model` (strict)."""
    wfile = Path(path) / WEIGHTS
    if not wfile.is_file():
        raise MetabonkError(f"{path} has no {WEIGHTS}")
    state = load_file(str(wfile), device=str(device))
    model.load_state_dict(state)


def load_trainer_state(path: str | Path) -> dict[str, Any] | None:
    """Optimizer/progress state saved beside the weights, or None if absent."""
    f = Path(path) / TRAINER
    if not f.is_file():
        return None
    return torch.load(f, map_location="cpu", weights_only=True)


class Checkpointed:
    """Mixin for a torch module with a dataclass `config`: `save` writes it as a checkpoint of kind `KIND`;
    `load` rebuilds it from `config.json` (`CONFIG` fields, or an override of `config_from_dict` for nested
    configs), loads the weights and returns it in eval mode on `device`."""

    KIND: ClassVar[str]
    CONFIG: ClassVar[type]
    config: Any

    @classmethod
    def config_from_dict(cls, data: dict[str, Any]) -> Any:
        return config_from_dict(cls.CONFIG, data)

    def save(self, path: str | Path, meta: dict[str, Any] | None = None,
             trainer_state: dict[str, Any] | None = None) -> Path:
        assert isinstance(self, torch.nn.Module)
        return save_checkpoint(path, self, self.config, self.KIND, meta, trainer_state)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> Self:
        doc = read_config(path, kind=cls.KIND)
        model = cls(cls.config_from_dict(doc["config"]))  # type: ignore[call-arg]
        assert isinstance(model, torch.nn.Module)
        if "quant" in doc:  # written by `metabonk quantize`: torchao tensors (a format plugin, imported lazily)
            from metabonk.quant.store import load_quantized_weights

            return load_quantized_weights(path, model, doc["quant"], device)  # type: ignore[return-value]
        load_weights(path, model, device="cpu")
        return model.to(device).eval()  # type: ignore[return-value]
