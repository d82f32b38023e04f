"""Pong latent-action sweep: train one LAM (or IDM) variant on a store and write its evaluation as JSON.

The GPU session runs one process per variant side by side (benchmarks/run_gpu_lam_pong.sh); each writes
OUT/<variant>.json with the figures of `metabonk eval lam` (or the IDM's held-out accuracy), the steps, the
wall time and the GPU name; checkpoints go under CKPT_DIR (default OUT).
Usage: python3 benchmarks/lam_pong_sweep.py DATA OUT VARIANT STEPS [CKPT_DIR]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from metabonk.common.results import write_result
from metabonk.latent.data import load_transitions
from metabonk.latent.evaluate import evaluate_idm, evaluate_lam
from metabonk.latent.idm import IDMConfig
from metabonk.latent.lam import LAMConfig
from metabonk.latent.train import TrainConfig, train_idm, train_lam
from metabonk.latent.vq import VQConfig

LAM_KEYS = {"cw": ("change_weight", float), "db": ("decoder_blocks", int), "os": ("object_shift", int),
            "c": ("num_codes", int), "w": ("width", int), "lr": ("lr", float),
            "s": ("seed", int), "k": ("context", int), "b": ("batch", int),
            "iw": ("independence_weight", float), "it": ("independence_temperature", float),
            "dm": ("decoder_motion", lambda v: bool(int(v)))}


def lam_variant(name: str) -> dict[str, object]:
    """Settings named by a variant such as fullres_cw20_db3_os6_c16: the trunk, then key+value tokens
    (cw change weight, db decoder blocks, os object shift, c codes, w width, lr learning rate, s seed,
    k past frames of context, b batch, iw independence weight, it its temperature, dm1 decoder motion)."""
    trunk, *tokens = name.split("_")
    settings: dict[str, object] = {"trunk": trunk, "num_codes": 8, "width": 32, "lr": 1e-3, "seed": 0, "batch": 64}
    for token in tokens:
        key = next((k for k in sorted(LAM_KEYS, key=len, reverse=True) if token.startswith(k)), None)
        if key is None:
            raise SystemExit(f"unknown token {token!r} in variant {name!r}")
        field, kind = LAM_KEYS[key]
        settings[field] = kind(token[len(key):])
    return settings


IDM_VARIANTS: dict[str, tuple[str, int]] = {
    "idm_fullres_1000": ("fullres", 1000),
    "idm_fullres_all": ("fullres", 0),
    "idm_pooled_all": ("pooled", 0),
    "idm_pooled_1000": ("pooled", 1000),
}


def main(data_dir: str, out_dir: str, variant: str, steps: int, ckpt_dir: str | None = None) -> None:
    out = Path(out_dir)
    ckpt = Path(ckpt_dir) if ckpt_dir else out
    train, held = load_transitions(data_dir).split()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = TrainConfig(steps=steps, batch=64, lr=1e-3, device=device, resume=False, quiet=True,
                      save_every=max(50, steps // 2), threads=2)
    t0 = time.perf_counter()
    if variant.startswith(("fullres", "pooled")):
        settings = lam_variant(variant)
        cfg.lr = float(settings.pop("lr"))  # type: ignore[arg-type]
        cfg.seed = int(settings.pop("seed"))  # type: ignore[call-overload]
        cfg.batch = int(settings.pop("batch"))  # type: ignore[call-overload]
        codes = int(settings.pop("num_codes"))  # type: ignore[call-overload]
        model_cfg = LAMConfig(vq=VQConfig(num_codes=codes), **settings)  # type: ignore[arg-type]
        lam = train_lam(train, ckpt / variant, cfg, model_cfg)
        seconds = time.perf_counter() - t0
        figures = evaluate_lam(lam, train, held)
    elif variant in IDM_VARIANTS:
        trunk, labelled = IDM_VARIANTS[variant]
        idm = train_idm(train, ckpt / variant, cfg, labelled=labelled, model_cfg=IDMConfig(trunk=trunk))
        seconds = time.perf_counter() - t0
        figures = evaluate_idm(idm, held)
        figures["labelled_transitions"] = labelled or len(train)
    else:
        raise SystemExit(f"unknown variant {variant!r}: fullres_*/pooled_* or {sorted(IDM_VARIANTS)}")
    figures.update(variant=variant, steps=steps, batch=cfg.batch, train_seconds=round(seconds, 1))
    write_result(out / f"{variant}.json", figures, torch.device(device))
    print(variant, {k: v for k, v in figures.items() if not isinstance(v, list)}, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else None)
