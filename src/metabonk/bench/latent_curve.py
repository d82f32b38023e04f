"""Benchmark: inverse-dynamics accuracy as a function of the number of labelled transitions."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from metabonk.common.device import device_label, resolve_device
from metabonk.common.results import write_result


def run_latent_curve(data: str | Path, budgets: list[int], steps: int = 600, batch: int = 32,
                     device: str = "auto", out_dir: str | Path = "benchmarks/results",
                     quiet: bool = False, crop: int = 0, threads: int = 0) -> dict[str, Any]:
    """Train one IDM per labelled budget on the store's train split; score each on the held-out split."""
    from metabonk.latent.data import load_transitions
    from metabonk.latent.evaluate import evaluate_idm, print_figures
    from metabonk.latent.idm import IDMConfig
    from metabonk.latent.train import TrainConfig, train_idm

    train, held = load_transitions(data).split()
    rows = []
    for n in budgets:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = TrainConfig(steps=steps, batch=batch, lr=2e-3, device=device, resume=False, quiet=quiet,
                              threads=threads)
            idm = train_idm(train, Path(tmp) / "idm", cfg, labelled=n, model_cfg=IDMConfig(crop=crop))
            figures = evaluate_idm(idm, held, max_transitions=2000)
        rows.append({"labelled_transitions": min(n, len(train)) if n > 0 else len(train),
                     "accuracy": figures["accuracy"], "movement_accuracy": figures["movement_accuracy"],
                     "majority_baseline": figures["majority_baseline"],
                     "movement_majority_baseline": figures["movement_majority_baseline"]})
    result = {"env": train.env, "steps": steps, "batch": batch, "crop": crop, "idm_curve": rows}
    print_figures("IDM accuracy vs labelled transitions", result)
    dev = resolve_device(device)
    write_result(Path(out_dir) / f"latent-curve-{device_label(dev)}.json", result, dev)
    return result
