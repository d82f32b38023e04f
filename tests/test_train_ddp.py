"""Data-parallel `fit` on CPU: two gloo ranks (started as torchrun starts them: RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT) end with the loss and weights of one process on the same global batch, resume on another
number of ranks, and a rank that dies ends the other with one clear error while the last checkpoint survives.

Run as `python -m tests.test_train_ddp OUT STEPS SAVE_EVERY DIE_AT` this file is one rank's worker."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from metabonk.common.checkpoint import load_trainer_state
from metabonk.train.fit import FitConfig, fit
from tests.test_train_fit import Regressor, RegressorConfig, sample

ROOT = Path(__file__).resolve().parents[1]
BATCH = 32  # the global batch: 16 windows per rank


def _cfg(steps: int, save_every: int) -> FitConfig:
    return FitConfig(steps=steps, lr=1e-2, warmup_steps=2, log_every=1, save_every=save_every, device="cpu",
                     ema_decay=0.9)


def _model() -> Regressor:
    torch.manual_seed(0)
    return Regressor(RegressorConfig(input_noise=0.0))  # no in-forward noise: ranks reseed torch per step


def _flat(model: torch.nn.Module) -> np.ndarray:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy()


def _train(out: Path, steps: int, save_every: int, die_at: int = -1, resume: bool = True) -> tuple[np.ndarray, list]:
    """One process's (or one rank's) run: final weights and the logged (step, loss) pairs."""
    from metabonk.common.logging import SCALAR_SINKS

    losses: list[tuple[int, float]] = []

    def sink(name: str, step: int, v: float) -> None:
        if name == "loss":
            losses.append((step, v))

    rank = int(os.environ.get("RANK", "0"))
    calls = [0]

    def draw(rng: np.random.Generator) -> dict[str, torch.Tensor]:
        calls[0] += 1
        if rank == 1 and calls[0] == die_at:
            os._exit(3)  # a rank killed mid-run (no clean-up, like an OOM kill)
        return sample(rng, BATCH)

    SCALAR_SINKS.append(sink)
    try:
        model = fit(_model(), draw, _cfg(steps, save_every), out, meta={}, resume=resume, show_progress=False,
                    ddp_find_unused=False)
    finally:
        SCALAR_SINKS.remove(sink)
    return _flat(model), losses


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(out: Path, ranks: int, steps: int, save_every: int, die_at: int = -1) -> list[subprocess.Popen]:
    port = _free_port()
    procs = []
    for r in range(ranks):
        env = {**os.environ, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(ranks),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "METABONK_DDP_TIMEOUT_S": "30",
               "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        procs.append(subprocess.Popen([sys.executable, "-m", "tests.test_train_ddp", str(out), str(steps),
                                       str(save_every), str(die_at)], cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def _wait(procs: list[subprocess.Popen], timeout: float = 80) -> list[tuple[int, str, str]]:
    end = time.monotonic() + timeout
    results = []
    for p in procs:
        try:
            o, e = p.communicate(timeout=max(1.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("a rank hung")
        results.append((p.returncode, o, e))
    return results


def test_two_gloo_ranks_match_one_process_and_resume_on_one(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    single, single_losses = _train(tmp_path / "single", steps=8, save_every=100)
    results = _wait(_launch(tmp_path / "ddp", ranks=2, steps=4, save_every=100))
    assert [r[0] for r in results] == [0, 0], [r[2][-2000:] for r in results]
    ddp4 = [json.loads(r[1].strip().splitlines()[-1]) for r in results]
    # the ranks agree exactly with each other (DDP broadcasts and averages), and with one process on the whole
    # batch up to float summation order
    assert ddp4[0]["params"] == ddp4[1]["params"]
    four, four_losses = _train(tmp_path / "single4", steps=4, save_every=100)
    np.testing.assert_allclose(ddp4[0]["params"], four, rtol=1e-5, atol=1e-6)
    ddp_losses = [v for _, v in ddp4[0]["losses"]]
    np.testing.assert_allclose(ddp_losses, [v for _, v in four_losses], rtol=1e-5)
    assert ddp_losses[-1] < ddp_losses[0]  # it trained: the loss moved down over the 4 steps
    assert (tmp_path / "ddp.tb").is_dir()  # rank 0 wrote TensorBoard beside the checkpoint
    # the 2-rank checkpoint (rank 0 wrote it) resumes in one process and ends where 8 uninterrupted steps end
    assert load_trainer_state(tmp_path / "ddp")["step"] == 4
    resumed, resumed_losses = _train(tmp_path / "ddp", steps=8, save_every=100)
    np.testing.assert_allclose(resumed, single, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([v for _, v in resumed_losses], [v for _, v in single_losses[4:]], rtol=1e-4)


def test_a_dead_rank_ends_the_other_with_one_line_and_the_checkpoint_survives(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    start = time.monotonic()
    results = _wait(_launch(out, ranks=2, steps=50, save_every=3, die_at=5))  # dies after the step-3 save
    assert results[1][0] == 3
    code, _, err = results[0]
    assert code == 1, err[-2000:]
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "rank 0/2" in lines[0] and "another rank died" in lines[0], err[-2000:]
    assert "Traceback" not in err
    assert time.monotonic() - start < 75  # no hang: gloo sees the closed peer (or the 30 s timeout fires)
    state = load_trainer_state(out)
    assert state["step"] == 3
    model = Regressor.load(out)  # the last checkpoint loads
    assert np.isfinite(_flat(model)).all()


def test_only_transport_errors_count_as_a_dead_rank() -> None:
    from metabonk.train.distributed import is_peer_failure

    assert is_peer_failure(RuntimeError("[gloo/transport/tcp/pair.cc:537] Read error: Connection reset by peer"))
    assert is_peer_failure(torch.distributed.DistBackendError("NCCL watchdog timeout"))
    # a model's own error under DDP keeps its traceback instead of blaming another rank
    assert not is_peer_failure(RuntimeError("Kernel size can't be greater than actual input size"))
    assert not is_peer_failure(ValueError("gloo"))


def test_train_world_under_torchrun_writes_one_checkpoint_that_resumes_alone(tmp_path: Path) -> None:
    from metabonk.world.synthetic import write_store
    from metabonk.world.world_model import WorldModel, read_meta

    write_store(tmp_path / "store", episodes=6, size=16, max_steps=40, seed=0)
    args = ["-m", "metabonk", "train", "world", "--data", str(tmp_path / "store"), "--out", str(tmp_path / "ckpt"),
            "--size", "tiny", "--batch", "8", "--device", "cpu", "--lr", "0.05"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "METABONK_DDP_TIMEOUT_S": "30", "PYTHONPATH": str(ROOT)}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr",
                "127.0.0.1", "--master-port", str(_free_port())]
    r = subprocess.run([*torchrun, *args, "--steps", "4"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "ckpt.tb", "store"]  # rank 0 alone wrote
    assert read_meta(tmp_path / "ckpt")["step"] == 4
    trained = WorldModel.load(tmp_path / "ckpt")
    torch.manual_seed(0)
    init = WorldModel(trained.config)
    assert np.abs(_flat(trained) - _flat(init)).max() > 1e-4  # the weights moved from a seed-0 init
    # the 2-rank checkpoint resumes in one process (a global batch of 8, now whole on one rank)
    r = subprocess.run([sys.executable, *args, "--steps", "6"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert read_meta(tmp_path / "ckpt")["step"] == 6
    # a global batch that does not split evenly: one error line from each rank, non-zero exit
    r = subprocess.run([*torchrun, *args, "--steps", "8", "--batch", "7"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    # each rank prints its one line first; what follows is torchrun's own summary of the failed workers
    first = r.stderr.splitlines()[:2]
    assert all(line.startswith("error: --batch 7 must divide by the 2 ranks") for line in first), r.stderr[-3000:]
    assert read_meta(tmp_path / "ckpt")["step"] == 6  # the checkpoint is untouched


def test_train_policy_bc_under_torchrun(tmp_path: Path) -> None:
    """BC's agent leaves its card head without gradient on most batches: DDP must allow unused parameters."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "METABONK_DDP_TIMEOUT_S": "30", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "metabonk", "record", "arena", "--out", str(tmp_path / "store"), "--policy",
                    "random", "--episodes", "4", "--num-envs", "4", "--max-steps", "60", "--size", "64", "--device",
                    "cpu", "--seed", "0"], env=env, check=True, capture_output=True, timeout=120)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr",
                        "127.0.0.1", "--master-port", str(_free_port()), "-m", "metabonk", "train", "policy",
                        "--algo", "bc", "--data", str(tmp_path / "store"), "--out", str(tmp_path / "bc"), "--steps",
                        "6", "--device", "cpu"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert load_trainer_state(tmp_path / "bc")["step"] == 6


if __name__ == "__main__":  # one rank of the tests above
    import tests.conftest  # noqa: F401  (the test process's METABONK_TEST_SEED offset, so ranks seed as it does)
    from metabonk.common.errors import MetabonkError

    torch.set_num_threads(1)
    out_dir, n_steps, every, die = Path(sys.argv[1]), *map(int, sys.argv[2:5])
    try:
        params, logged = _train(out_dir, n_steps, every, die)
    except MetabonkError as exc:
        print(exc, file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"params": params.tolist(), "losses": logged}))
