"""Spread of tests/test_world_learning.py's fixture over seeds and thread counts (the margins' evidence):
trains the same tiny world model as the test and prints its fidelity/controllability figures as one JSON line.
Usage: python benchmarks/wl_probe.py SEED THREADS STEPS [LR] [BATCH] [HORIZON_STARTS]"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time

import torch

from metabonk.world.config import UNetConfig, tiny_config
from metabonk.world.eval_store import evaluate_on_store
from metabonk.world.synthetic import write_store
from metabonk.world.train import TrainConfig, train_world
from metabonk.world.world_model import read_meta


def main() -> None:
    seed, threads, steps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    lr = float(sys.argv[4]) if len(sys.argv) > 4 else 2e-3
    batch = int(sys.argv[5]) if len(sys.argv) > 5 else 16
    d = tempfile.mkdtemp(prefix=f"wl-s{seed}-")
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    t = time.time()
    store = write_store(os.path.join(d, "store"), episodes=24, size=16, max_steps=80, seed=0)
    cfg = tiny_config(frame_size=16, num_actions=9, num_context=2)
    cfg.unet = UNetConfig(channels=(32, 32), depths=(1, 1), cond_channels=64, num_groups=8)
    tc = TrainConfig(steps=steps, batch=batch, lr=lr, warmup_steps=20, device="cpu", holdout=0.2,
                     save_every=10_000, seed=seed)
    model = train_world(os.path.join(d, "store"), os.path.join(d, "ckpt"), tc, cfg, show_progress=False)
    t1 = time.time()
    res = evaluate_on_store(model, read_meta(os.path.join(d, "ckpt")), store, horizon=4, max_starts=64)
    con = res["controllability"]
    print(json.dumps({
        "seed": seed, "threads": threads, "steps": steps, "lr": lr, "batch": batch,
        "psnr": res["psnr_db"], "copy": res["copy_last_psnr_db"],
        "cos": con["direction_cosine_mean"], "cos_each": con.get("direction_cosine"),
        "between": con["between_action_diff"], "redraw": con["same_action_redraw_diff"],
        "train_s": t1 - t, "eval_s": time.time() - t1}), flush=True)
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
