"""Evaluation of the latent models: probe accuracy, ΔtPSNR, codebook usage, IDM and adapter accuracy."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from metabonk.latent.adapter import adapter_from_codes, infer_all
from metabonk.latent.calibrate import fit_temperature
from metabonk.latent.data import TransitionData
from metabonk.latent.frames import psnr
from metabonk.latent.idm import InverseDynamicsModel, predict_transitions
from metabonk.latent.independence import empirical_mutual_information
from metabonk.latent.lam import LatentActionModel
from metabonk.latent.vq import codebook_usage

LABEL_BUDGETS = (100, 1000, 10000)


def per_code_probe(codes_fit: np.ndarray, y_fit: np.ndarray, codes_test: np.ndarray,
                   y_test: np.ndarray) -> dict[str, float]:
    """Accuracy of predicting y from the code alone (majority label per code, fit on a separate split)."""
    majority = int(np.bincount(y_fit).argmax())
    table = {}
    for c in np.unique(codes_fit):
        table[int(c)] = int(np.bincount(y_fit[codes_fit == c]).argmax())
    pred = np.array([table.get(int(c), majority) for c in codes_test])
    return {"accuracy": float((pred == y_test).mean()),
            "majority_baseline": float((y_test == majority).mean())}


def half_split_probe(keys: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[str, float]:
    """`per_code_probe` of y from integer keys [N], fit on a random half of the rows and scored on the other."""
    order = np.random.default_rng(seed).permutation(len(keys))
    fit, test = order[: len(order) // 2], order[len(order) // 2:]
    return per_code_probe(keys[fit], y[fit], keys[test], y[test])


@torch.no_grad()
def next_frame_figures(lam: LatentActionModel, data: TransitionData, count: int = 1024,
                       seed: int = 0) -> dict[str, float]:
    """ΔtPSNR (inferred code vs uniformly random code) and next-frame MSE with true vs shuffled codes."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(data), size=min(count, len(data)), replace=False)
    k = lam.config.vq.num_codes
    gen = torch.Generator().manual_seed(seed)
    psnr_true, psnr_rand, mse_true, mse_shuf, mse_copy = [], [], [], [], []
    for start in range(0, len(rows), 256):
        frames = data.windows(rows[start:start + 256], lam.config.context)
        codes = lam.infer_codes(frames).cpu()
        rand = torch.randint(0, k, codes.shape, generator=gen)
        shuf = codes[torch.randperm(len(codes), generator=gen)]
        target = lam.crop(frames)[:, -1].float() / 255
        psnr_true.append(psnr(lam.predict(frames, codes).cpu(), target))
        psnr_rand.append(psnr(lam.predict(frames, rand).cpu(), target))
        mse_true.append(lam.next_frame_mse(frames, codes).cpu())
        mse_shuf.append(lam.next_frame_mse(frames, shuf).cpu())
        cropped = lam.crop(frames).float()
        mse_copy.append(((cropped[:, -1] - cropped[:, -2]) / 127.5).pow(2).flatten(1).mean(1))
    p_true, p_rand = torch.cat(psnr_true).mean(), torch.cat(psnr_rand).mean()
    return {
        "psnr_db": float(p_true),
        "psnr_random_code_db": float(p_rand),
        "delta_t_psnr_db": float(p_true - p_rand),
        "mse_true_code": float(torch.cat(mse_true).mean()),
        "mse_shuffled_code": float(torch.cat(mse_shuf).mean()),
        "mse_copy_last_frame": float(torch.cat(mse_copy).mean()),
    }


def _budgets(available: int) -> list[int]:
    out = [n for n in LABEL_BUDGETS if n <= available]
    if available < LABEL_BUDGETS[-1] and available not in out:
        out.append(available)  # "10,000 where data allows": else all there is
    return out


def pair_probe(prev_codes: np.ndarray, codes: np.ndarray, y: np.ndarray, num_codes: int,
               seed: int = 0) -> dict[str, float]:
    """`half_split_probe` of y from the codes of two consecutive transitions (z_{t-1}, z_t).
    Where a control sets an object's acceleration rather than its position (Pong's paddle has inertia), one code
    can say where the object moved but only two say how its motion changed."""
    return half_split_probe(prev_codes.astype(np.int64) * num_codes + codes, y, seed)


def _codes_before(lam: LatentActionModel, data: TransitionData,
                  codes: np.ndarray) -> tuple[np.ndarray, TransitionData, np.ndarray]:
    """(rows of `data` with t > 0, their previous transitions, the code of each of those): taken from `codes`
    (those of `data`) where that transition is in `data`, inferred for the rest."""
    rows, before = data.previous()
    where = {(int(e), int(t)): i for i, (e, t) in enumerate(data.index)}
    known = np.array([where.get((int(e), int(t)), -1) for e, t in before.index], dtype=np.int64)
    prev = codes[np.maximum(known, 0)].astype(np.int64)
    missing = np.nonzero(known < 0)[0]
    if len(missing):
        prev[missing] = infer_all(lam, before.subset(missing))[0].numpy()
    return rows, before, prev


def evaluate_lam(lam: LatentActionModel, train: TransitionData, held: TransitionData,
                 max_transitions: int = 4000, seed: int = 0) -> dict[str, Any]:
    """All LAM figures on the held-out split; probes and adapters fit on labelled data only where present."""
    held_eval = held.take(max_transitions, seed=seed)
    codes, _ = infer_all(lam, held_eval)
    k = lam.config.vq.num_codes
    figures: dict[str, Any] = {
        "num_codes": k, "frame_size": held.frame_size, "env": held.env,
        "train_transitions": len(train), "eval_transitions": len(held_eval),
        **codebook_usage(codes, k), **next_frame_figures(lam, held_eval, seed=seed),
    }
    if not (held_eval.labelled and train.labelled):
        return figures
    actions = held_eval.actions_at(np.arange(len(held_eval))).numpy()
    moves = held_eval.movement_at(np.arange(len(held_eval))).numpy()
    codes_np = codes.numpy()
    probe_move = half_split_probe(codes_np, moves, seed)
    probe_act = half_split_probe(codes_np, actions, seed)
    figures.update({
        "probe_accuracy": probe_move["accuracy"],
        "probe_majority_baseline": probe_move["majority_baseline"],
        "probe_action_accuracy": probe_act["accuracy"],
        "probe_action_majority_baseline": probe_act["majority_baseline"],
        "probe_ceiling_accuracy": _ceiling(codes_np, moves),
    })
    rows, before, prev_codes = _codes_before(lam, held_eval, codes_np)
    if len(rows) >= 2:
        pair = pair_probe(prev_codes, codes_np[rows], moves[rows], k, seed)
        figures["probe_pair_accuracy"] = pair["accuracy"]
        figures["probe_pair_majority_baseline"] = pair["majority_baseline"]
        figures["consecutive_code_mi_nats"] = empirical_mutual_information(
            torch.from_numpy(prev_codes), torch.from_numpy(codes_np[rows]), k)
        prev_moves = before.movement_at(np.arange(len(before))).numpy()
        figures["consecutive_movement_mi_nats"] = empirical_mutual_information(
            torch.from_numpy(prev_moves), torch.from_numpy(moves[rows]), int(max(moves.max(), prev_moves.max())) + 1)
    figures["adapter_curve"] = adapter_curve(lam, train, held_eval, codes, seed)
    return figures


def _ceiling(codes: np.ndarray, y: np.ndarray) -> float:
    """Best accuracy any per-code mapping could reach on this data (its in-sample majority per code)."""
    hits = sum(int(np.bincount(y[codes == c]).max()) for c in np.unique(codes))
    return hits / len(y)


def adapter_curve(lam: LatentActionModel, train: TransitionData, held: TransitionData,
                  held_codes: torch.Tensor, seed: int = 0) -> list[dict[str, float]]:
    """Adapter accuracy (code -> action, code -> movement) on held-out data vs labelled transitions used."""
    actions = held.actions_at(np.arange(len(held)))
    moves = held.movement_at(np.arange(len(held)))
    out = []
    for n in _budgets(len(train)):
        part = train.take(n, seed=seed)
        codes, latents = infer_all(lam, part)
        rows = np.arange(len(part))
        adapter = adapter_from_codes(codes, latents, part.actions_at(rows), part.movement_at(rows), lam, part)
        pred = adapter.code_to_action(held_codes)
        pred_move = adapter.code_to_movement(held_codes)
        back = adapter.action_to_code(actions)
        out.append({"labelled_transitions": len(part),
                    "action_accuracy": float((pred == actions).float().mean()),
                    "movement_accuracy": float((pred_move == moves).float().mean()),
                    "action_to_code_agreement": float((back == held_codes).float().mean())})
    return out


@torch.no_grad()
def evaluate_idm(idm: InverseDynamicsModel, held: TransitionData, max_transitions: int = 4000,
                 seed: int = 0) -> dict[str, Any]:
    """IDM accuracy (full action and movement class) on held-out labelled data, against majority baselines."""
    held = held.take(max_transitions, seed=seed)
    out = predict_transitions(idm, held)
    truth = held.actions_at(np.arange(len(held)))
    actions = truth.numpy()
    true_moves = held.movement_at(np.arange(len(held))).numpy()
    pred, move, conf, raw = out["action"].numpy(), out["movement"].numpy(), out["confidence"].numpy(), out["logits"]
    best_t = fit_temperature(raw, truth)
    correct = pred == actions
    return {
        # calibration: NLL of the probabilities `predict` gives (at the IDM's temperature), and the temperature
        # that would minimise it on this data (1 = already calibrated here; > 1 = overconfident)
        "nll": float(F.cross_entropy(raw / idm.config.temperature, truth)),
        "temperature": idm.config.temperature, "best_temperature": best_t,
        "nll_at_best_temperature": float(F.cross_entropy(raw / best_t, truth)),
        "env": held.env, "eval_transitions": len(held),
        "accuracy": float(correct.mean()),
        "majority_baseline": float((actions == np.bincount(actions).argmax()).mean()),
        "movement_accuracy": float((move == true_moves).mean()),
        "movement_majority_baseline": float((true_moves == np.bincount(true_moves).argmax()).mean()),
        "mean_confidence": float(conf.mean()),
        "accuracy_when_confident": float(correct[conf >= 0.5].mean()) if (conf >= 0.5).any() else 0.0,
    }


def print_figures(title: str, figures: dict[str, Any]) -> None:
    """A rich table of the scalar figures, plus one row per entry of each curve."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        if isinstance(value, list):
            for row in value:
                label = f"{key} (n={row.get('labelled_transitions')})"
                table.add_row(label, ", ".join(f"{k}={_fmt(v)}" for k, v in row.items()
                                               if k != "labelled_transitions"))
        else:
            table.add_row(key, _fmt(value))
    Console().print(table)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
