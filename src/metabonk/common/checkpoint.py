"""Model checkpoints: safetensors weights + JSON config, written to a temp dir then renamed into place.

Layout of a checkpoint directory::

    CKPT/model.safetensors   weights (no pickle)
    CKPT/config.json         {"kind": ..., "config": {...dataclass fields...}, "meta": {...}}
    CKPT/trainer.pt          optional optimizer/progress state, loaded with weights_only=True

Writing never touches files it did not write: the new checkpoint is built in a sibling temp dir, other
entries of an existing checkpoint dir (logs, reports) are carried over, and any failure puts them back.
Loading builds the model from `config.json` under an allocation bound set by the weights file, then checks
every shape against the file's header, so a tampered config is one clear error, never a huge allocation or a
state-dict traceback.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import pickle
import shutil
import stat
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch.overrides import TorchFunctionMode

from metabonk.common.errors import MetabonkError

C = TypeVar("C")
log = logging.getLogger("metabonk.checkpoint")

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TRAINER = "trainer.pt"
OWN_FILES = (WEIGHTS, CONFIG, TRAINER)
LOG_DIRS = ("tb",)
"""Entries a trainer may write into its --out before the first checkpoint (TensorBoard logs)."""


def config_to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain JSON-able dict (nested dataclasses included)."""
    return dataclasses.asdict(config)


def config_from_dict(cls: type[C], data: dict[str, Any]) -> C:
    """Build a config dataclass from a dict, ignoring unknown keys and keeping defaults for missing ones."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names}
    return cls(**kwargs)


def check_out_dir(out: str | Path, *inputs: str | Path | None, markers: tuple[str, ...] = (CONFIG,)) -> Path:
    """Refuse a checkpoint --out that holds the user's files: the current directory or one above it, a
    folder that contains an input (the episode store, a checkpoint read), a file, or a non-empty folder that
    is not a MetaBonk checkpoint (holds none of `markers`; a run folder passes its own). Returns `out`
    unchanged."""
    target = Path(out).resolve()
    if Path.cwd().resolve().is_relative_to(target):
        raise MetabonkError(f"--out {out} is the current directory or one above it: name a new checkpoint "
                            f"directory (e.g. --out runs/NAME)")
    for p in inputs:
        if p is None:
            continue
        inp = Path(p).resolve()
        if inp == target and any((target / m).exists() for m in markers):
            continue  # continuing a checkpoint in place is an atomic replace, not a loss
        if inp.is_relative_to(target):
            raise MetabonkError(f"--out {out} contains the input {p}: name a new checkpoint directory")
    if target.exists() and not target.is_dir():
        raise MetabonkError(f"--out {out} exists and is not a directory")
    if target.is_dir() and not any((target / m).exists() for m in markers):
        foreign = sorted(e.name for e in target.iterdir() if e.name not in LOG_DIRS)
        if foreign:
            raise MetabonkError(f"--out {out} is a non-empty directory that is not a MetaBonk checkpoint "
                                f"(it holds {', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}): "
                                f"choose a new or empty directory")
    return Path(out)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _set_modes(tmp: Path, dir_mode: int) -> None:
    """mkdtemp makes 0700 dirs: give the checkpoint the modes of any file the user creates (or the old dir's)."""
    file_mode = 0o666 & ~_umask()
    for entry in tmp.iterdir():
        if entry.is_file():
            os.chmod(entry, file_mode)
    os.chmod(tmp, dir_mode)


def _discard_old(old: Path, path: Path) -> None:
    """Delete the previous checkpoint's own files; anything else that appeared meanwhile goes back to `path`."""
    for name in OWN_FILES:
        (old / name).unlink(missing_ok=True)
    for entry in old.iterdir():
        if not (path / entry.name).exists():
            os.rename(entry, path / entry.name)
    try:
        old.rmdir()
    except OSError:
        log.warning("checkpoint: kept %s (entries whose names the new checkpoint also has)", old)


def _atomic_dir_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write into a fresh temp dir beside `path`, then swap it in; a crash never leaves a half checkpoint and
    a failure never loses an entry of an existing `path`."""
    path = Path(path).resolve()
    if Path.cwd().resolve().is_relative_to(path):
        raise MetabonkError(f"refusing to write a checkpoint over {path}: it is the current directory or one "
                            f"above it (name a new directory, e.g. runs/NAME)")
    if path.exists() and not path.is_dir():
        raise MetabonkError(f"cannot write a checkpoint to {path}: it exists and is not a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = path.is_dir()
    dir_mode = stat.S_IMODE(path.stat().st_mode) if existed else 0o777 & ~_umask()
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    moved: list[str] = []
    swapped = False
    try:
        write(tmp)
        _set_modes(tmp, dir_mode)
        if not existed:
            os.rename(tmp, path)
            return
        # Keep what lives beside the weights (TensorBoard logs, reports): only our own files are replaced.
        for entry in path.iterdir():
            if entry.name not in OWN_FILES and not (tmp / entry.name).exists():
                os.rename(entry, tmp / entry.name)
                moved.append(entry.name)
        old = path.with_name(f".{path.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        os.rename(path, old)
        try:
            os.rename(tmp, path)
        except BaseException:
            os.rename(old, path)
            raise
        swapped = True
        _discard_old(old, path)
    except BaseException:
        if not swapped:
            for name in moved:  # put the user's entries back before the temp dir goes
                os.rename(tmp / name, path / name)
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
    """Read a checkpoint's config.json; checks its shape, and the model kind when given."""
    path = Path(path)
    cfg_file = path / CONFIG
    if not cfg_file.is_file():
        raise MetabonkError(f"{path} is not a MetaBonk checkpoint (no {CONFIG})")
    try:
        doc = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MetabonkError(f"{cfg_file} is not valid JSON: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str):
        raise MetabonkError(f"{cfg_file} is not a MetaBonk checkpoint config (no 'kind')")
    if kind is not None and doc["kind"] != kind:
        raise MetabonkError(f"{path} holds a '{doc['kind']}' model, expected '{kind}'")
    if not isinstance(doc.get("config"), dict):
        raise MetabonkError(f"{cfg_file} has no 'config' object: the checkpoint is damaged")
    return doc


def weight_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from the safetensors header (no tensor data is read)."""
    wfile = Path(path) / WEIGHTS
    if not wfile.is_file():
        raise MetabonkError(f"{path} has no {WEIGHTS}")
    try:
        with safe_open(str(wfile), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise MetabonkError(f"{wfile} is truncated or not a safetensors file: {e}") from e


def check_shapes(path: str | Path, expected: dict[str, torch.Tensor], found: dict[str, tuple[int, ...]]) -> None:
    """Refuse weights whose names or shapes differ from those of the model the config builds."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        what = f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(extra[:3])}"
        raise MetabonkError(f"{path}: the weights do not match config.json ({what})")
    for name, t in expected.items():
        if tuple(t.shape) != found[name]:
            raise MetabonkError(f"{path}: config.json builds {name} of shape {tuple(t.shape)} but the weights "
                                f"hold {found[name]}: the checkpoint is damaged")


def load_weights(path: str | Path, model: torch.nn.Module, device: str | torch.device = "cpu") -> None:
    """Load safetensors weights from checkpoint dir `path` into `model` (strict; shapes checked first)."""
    check_shapes(path, model.state_dict(), weight_shapes(path))
    wfile = Path(path) / WEIGHTS
    try:
        state = load_file(str(wfile), device=str(device))
    except (SafetensorError, OSError) as e:
        raise MetabonkError(f"{wfile} is truncated or not a safetensors file: {e}") from e
    model.load_state_dict(state)


def load_trainer_state(path: str | Path) -> dict[str, Any] | None:
    """Optimizer/progress state saved beside the weights, or None if absent."""
    f = Path(path) / TRAINER
    if not f.is_file():
        return None
    try:
        state = torch.load(f, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as e:
        # torch's message advises weights_only=False, i.e. running the file's code: never pass that on
        raise MetabonkError(f"{f} is damaged or holds more than tensors and numbers; delete it to start "
                            f"training from the weights ({type(e).__name__})") from e
    if not isinstance(state, dict):
        raise MetabonkError(f"{f} is not a trainer state (a {type(state).__name__}); delete it")
    return state


class _AllocationGuard(TorchFunctionMode):
    """Refuses tensor creations beyond a budget of elements while a model is built from an untrusted config.

    Written here because torch has no allocation limit; building on the meta device instead would fail for
    models whose constructors read a tensor's values (e.g. `.item()` on a config-derived buffer)."""

    SIZED = (torch.empty, torch.zeros, torch.ones, torch.rand, torch.randn, torch.full, torch.empty_strided)

    def __init__(self, budget: int, path: Path) -> None:
        super().__init__()
        self.budget, self.used, self.path = budget, 0, path

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in self.SIZED:
            size = kwargs.get("size", args[0] if args and not isinstance(args[0], int) else args)
            if isinstance(size, (tuple, list, torch.Size)) and all(isinstance(s, int) for s in size):
                self.used += math.prod(size)
                if self.used > self.budget:
                    raise MetabonkError(f"{self.path}/{CONFIG} describes a model far larger than its weights "
                                        f"(over {self.budget:,} values): the checkpoint is damaged")
        return func(*args, **kwargs)


def _build(cls: Callable[[Any], torch.nn.Module], config: Any, path: Path, kind: str,
           found: dict[str, tuple[int, ...]]) -> torch.nn.Module:
    """Build `cls(config)` with allocations bounded by the weights file's size, then check the shapes."""
    budget = 2 * sum(math.prod(s) for s in found.values()) + (1 << 24)
    try:
        with _AllocationGuard(budget, path):
            model = cls(config)
    except MetabonkError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, RuntimeError, AssertionError,
            OverflowError, ZeroDivisionError) as e:
        raise MetabonkError(f"{path}/{CONFIG} does not describe a valid '{kind}' model: "
                            f"{type(e).__name__}: {e}") from e
    check_shapes(path, model.state_dict(), found)
    return model


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
        path = Path(path)
        doc = read_config(path, kind=cls.KIND)
        found = weight_shapes(path)
        try:
            config = cls.config_from_dict(doc["config"])
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            raise MetabonkError(f"{path}/{CONFIG} has a bad '{cls.KIND}' config: {type(e).__name__}: {e}") from e
        if "quant" in doc:  # written by `metabonk quantize`: torchao tensors (a format plugin, imported lazily)
            from metabonk.quant.store import load_quantized

            return load_quantized(cls, config, path, doc["quant"], found, device)  # type: ignore[return-value]
        model = _build(cls, config, path, cls.KIND, found)  # type: ignore[arg-type]
        load_weights(path, model, device="cpu")
        return model.to(device).eval()  # type: ignore[return-value]

