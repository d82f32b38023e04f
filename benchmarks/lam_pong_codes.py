"""What a Pong latent action model's codes encode: per-code probes (majority label per code, fit on half of the
held-out split, `half_split_probe`) of the button's movement class and of the player paddle's displacement, read
from the RAM that `metabonk record ale:Pong` keeps beside the frames (byte 51: the paddle's height). Prints a table
and writes JSON.
Usage: python3 benchmarks/lam_pong_codes.py STORE LAM_CKPT [json]"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch

from metabonk.data.store import EpisodeStore
from metabonk.latent.adapter import infer_all
from metabonk.latent.data import load_transitions
from metabonk.latent.evaluate import half_split_probe
from metabonk.latent.frames import PONG_PADDLE_RAM
from metabonk.latent.lam import LatentActionModel


def main(store_dir: str, ckpt: str, json_path: str | None = None) -> dict[str, dict[str, float]]:
    torch.set_num_threads(2)
    _, held = load_transitions(store_dir).split()  # the eval verb's held-out split
    held = held.take(4000, seed=0)
    store = EpisodeStore.open(store_dir)
    heights = [(store.episode(i, keys=["state"])["state"][:, PONG_PADDLE_RAM] * 255).round().astype(int)
               for i in range(len(store))]  # the store keeps RAM bytes / 255
    lam = LatentActionModel.load(ckpt)
    codes = infer_all(lam, held)[0].numpy()
    moves = held.movement_at(np.arange(len(held))).numpy()
    dy = np.array([heights[e][t + 1] - heights[e][t] for e, t in held.index])
    dy_prev = np.array([heights[e][t] - heights[e][t - 1] if t > 0 else 0 for e, t in held.index])

    def probe(keys: np.ndarray, y: np.ndarray) -> dict[str, float]:  # keys: one or more columns per row
        return half_split_probe(np.unique(keys.reshape(len(y), -1), axis=0, return_inverse=True)[1].ravel(), y)

    res = {
        "displacement sign from the code": probe(codes, np.sign(dy).astype(int) + 1),
        "movement class from the code": probe(codes, moves),
        "movement class from the displacement (RAM)": probe(dy, moves),
        "movement class from the code and the previous displacement (RAM)": probe(np.stack([codes, dy_prev], 1), moves),
        "movement class from both displacements (RAM oracle)": probe(np.stack([dy, dy_prev], 1), moves),
    }
    print(f"{'probe':70s} {'accuracy':>9s} {'majority':>9s}")
    for name, r in res.items():
        print(f"{name:70s} {r['accuracy']:9.3f} {r['majority_baseline']:9.3f}")
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"store": store_dir, "checkpoint": ckpt, "transitions": len(codes), "probes": res}, f, indent=1)
    return res


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], a[1], a[2] if len(a) > 2 else None)
