"""Shape and dtype checks for episodes entering the store; every mistake is a one-line MetabonkError."""

from __future__ import annotations

import numpy as np

from metabonk.common.errors import MetabonkError

STEP_KEYS: dict[str, type] = {
    "action": np.int64,
    "reward": np.float32,
    "terminated": np.bool_,
    "truncated": np.bool_,
    "action_idm": np.int64,
    "action_idm_conf": np.float32,
    "intent": np.int64,
}
"""Known per-step keys (length T) and the dtype they are stored as."""

FRAME_KEYS: dict[str, type] = {"obs": np.uint8, "state": np.float32}
"""Known per-frame keys (length T+1)."""


def _cast(name: str, value: np.ndarray, dtype: type) -> np.ndarray:
    """Cast to the stored dtype when it is lossless in kind (ints→int64, floats→float32, 0/1→bool)."""
    kind = value.dtype.kind
    if dtype is np.int64:
        if kind not in "iub":
            raise MetabonkError(f"episode key '{name}' must hold integers, got dtype {value.dtype}")
    elif dtype is np.float32:
        if kind not in "fiub":
            raise MetabonkError(f"episode key '{name}' must hold floats, got dtype {value.dtype}")
    elif dtype is np.bool_:
        if kind != "b" and not (kind in "iu" and np.isin(value, (0, 1)).all()):
            raise MetabonkError(f"episode key '{name}' must hold booleans, got dtype {value.dtype}")
    elif dtype is np.uint8 and value.dtype != np.uint8:
        raise MetabonkError(f"episode key '{name}' must be uint8 frames, got dtype {value.dtype}")
    return np.ascontiguousarray(value, dtype=dtype)


def validate_episode(
    episode: dict[str, np.ndarray], frame_size: int, num_actions: int | None
) -> dict[str, np.ndarray]:
    """Check an episode dict against the store contract; returns the arrays as stored (defaults filled).

    Missing `reward` becomes zeros, missing `terminated` all False, missing `truncated` False except the
    last step (an episode cut off by its source, as for video).
    """
    if not isinstance(episode, dict):
        raise MetabonkError(f"an episode must be a dict of numpy arrays, got {type(episode).__name__}")
    if "obs" not in episode:
        raise MetabonkError("an episode needs 'obs' (uint8 [T+1,H,W,3])")
    arrays = {k: np.asarray(v) for k, v in episode.items()}
    obs = arrays["obs"]
    if obs.ndim != 4 or obs.shape[1:] != (frame_size, frame_size, 3):
        raise MetabonkError(
            f"episode 'obs' must have shape [T+1,{frame_size},{frame_size},3] for this store, got {obs.shape}"
        )
    T = obs.shape[0] - 1
    if T < 1:
        raise MetabonkError(f"an episode needs at least 2 frames (1 step), got {obs.shape[0]}")
    arrays["obs"] = _cast("obs", obs, np.uint8)
    if "reward" not in arrays:
        arrays["reward"] = np.zeros(T, np.float32)
    if "terminated" not in arrays:
        arrays["terminated"] = np.zeros(T, bool)
    if "truncated" not in arrays:
        trunc = np.zeros(T, bool)
        trunc[-1] = not bool(arrays["terminated"][-1]) if arrays["terminated"].shape == (T,) else True
        arrays["truncated"] = trunc
    for name, value in list(arrays.items()):
        if name == "obs":
            continue
        if not name or not all(c.isalnum() or c == "_" for c in name):
            raise MetabonkError(f"episode key {name!r} must be a non-empty identifier")
        if value.ndim == 0 or value.shape[0] not in (T, T + 1):
            raise MetabonkError(
                f"episode key '{name}' must have leading length T={T} (per step) or T+1={T + 1} "
                f"(per frame), got shape {value.shape}"
            )
        if name in STEP_KEYS:
            if value.shape != (T,):
                raise MetabonkError(f"episode key '{name}' must have shape [{T}], got {value.shape}")
            arrays[name] = _cast(name, value, STEP_KEYS[name])
        elif name == "state":
            if value.ndim != 2 or value.shape[0] != T + 1:
                raise MetabonkError(f"episode key 'state' must have shape [{T + 1},D], got {value.shape}")
            arrays[name] = _cast(name, value, np.float32)
        elif value.dtype == object or value.dtype.kind in "USV":
            raise MetabonkError(f"episode key '{name}' has unsupported dtype {value.dtype}")
        else:
            arrays[name] = np.ascontiguousarray(value)
    if not np.isfinite(arrays["reward"]).all():
        raise MetabonkError("episode 'reward' holds NaN or inf")
    for key in ("action", "action_idm"):
        if key in arrays and num_actions is not None:
            a = arrays[key]
            if a.min() < 0 or a.max() >= num_actions:
                raise MetabonkError(
                    f"episode '{key}' values must lie in [0, {num_actions}), got range [{a.min()}, {a.max()}]"
                )
    return arrays


def validate_update(
    new_arrays: dict[str, np.ndarray], T: int, num_actions: int | None = None
) -> dict[str, np.ndarray]:
    """Check arrays added to an existing episode of T steps (e.g. IDM labels); `obs` may not change."""
    out: dict[str, np.ndarray] = {}
    for name, value in new_arrays.items():
        if name in ("obs", "action"):
            raise MetabonkError(f"update_episode may not replace '{name}' (true data is never overwritten)")
        v = np.asarray(value)
        if v.ndim == 0 or v.shape[0] not in (T, T + 1):
            raise MetabonkError(f"update key '{name}' must have leading length {T} or {T + 1}, got {v.shape}")
        if name in STEP_KEYS:
            if v.shape != (T,):
                raise MetabonkError(f"update key '{name}' must have shape [{T}], got {v.shape}")
            v = _cast(name, v, STEP_KEYS[name])
        if name == "action_idm" and num_actions is not None and (v.min() < 0 or v.max() >= num_actions):
            raise MetabonkError(f"'action_idm' must lie in [0, {num_actions}), got [{v.min()}, {v.max()}]")
        out[name] = np.ascontiguousarray(v)
    return out
