"""`metabonk bench unified`: System 1, the world model's dream and an LLM decoding, sharing one GPU in one process.

The seeds' unified stack (issue 22). In one process, three threads:
- System 1: the CfC agent's whole step at batch 1 (pixels in, action logits and hidden state out), one CUDA
  graph replayed on a **high-priority** stream, paced at `hz` ticks per second; each tick is timed from the
  replay call to its stream's completion (so waiting for the GIL after the GPU finished counts too);
- the dream: the world model's sampler (DIAMOND's Atari size, 3 Euler steps) at full batch, CUDA-graphed,
  replayed back to back on a **low-priority** stream;
- System 2's load: a model of SmolLM2-135M's shape (transformers' Llama, bf16, random weights: the bundled
  98 MB GGUF exceeds what a device call carries, and weights do not change the arithmetic) decoding greedily
  from a planner-sized prompt, on its own stream.
Graphs are captured with `capture_error_mode="thread_local"`, and System 1 is captured *again while the dream
thread launches kernels* (the global mode fails there with cudaErrorStreamCaptureInvalidated). Phases: System 1
alone, the dream alone, System 1 + dream, System 1 + dream + LLM, and that last load again with System 1 on a
default-priority stream (the in-run reference). Imports only torch (and transformers for the LLM), so it runs
on a bare GPU machine: `python3 -m metabonk.bench.unified OUT.json`.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from metabonk.common.errors import MetabonkError

DREAMS = ("fused_fp8", "fused_bf16", "bf16_graph")
SMOLLM2_135M = {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
                "num_key_value_heads": 3, "vocab_size": 49152, "max_position_embeddings": 8192,
                "tie_word_embeddings": True, "rope_theta": 100000.0}
"""SmolLM2-135M-Instruct's architecture (its config.json on the Hugging Face hub)."""


@dataclass
class UnifiedArgs:
    """Settings of the unified-stack benchmark."""

    seconds: float = 15.0
    """Length of each measured phase."""
    hz: float = 120.0
    """System 1's paced tick rate."""
    dream: str = "fused_fp8"
    dream_batch: int = 1024
    llm: bool = True
    llm_prompt_tokens: int = 320
    llm_new_tokens: int = 24
    switch_interval_s: float = 1e-4
    """sys.setswitchinterval while the threads share the GIL (Python's default 5 ms would delay System 1's ticks)."""
    dream_sms: int | None = None
    """Confine the dream to a green context of this many SMs (torch.cuda.green_contexts), leaving the rest to
    System 1 and the LLM; None = the dream may use every SM."""


class _Loop(threading.Thread):
    """Runs `work` (returns units done) back to back on `stream` until stopped; counts units and seconds."""

    def __init__(self, work: Callable[[], int], stream: torch.cuda.Stream) -> None:
        super().__init__(daemon=True)
        self.work, self.stream = work, stream
        self.units, self.calls, self.error = 0, 0, None
        self.busy = threading.Event()
        self.stop = threading.Event()
        self.latencies: list[float] = []

    def run(self) -> None:
        try:
            with torch.cuda.stream(self.stream):
                while not self.stop.is_set():
                    if not self.busy.is_set():
                        time.sleep(0.001)
                        continue
                    t = time.perf_counter()
                    self.units += self.work()
                    self.stream.synchronize()
                    self.latencies.append(time.perf_counter() - t)
                    self.calls += 1
        except Exception as e:  # reported in the result, the benchmark goes on
            self.error = f"{type(e).__name__}: {e}"[:300]

    def take(self) -> tuple[int, list[float]]:
        units, lat = self.units, self.latencies
        self.units, self.latencies = 0, []
        return units, lat


def green_stream(num_sms: int) -> tuple[Any, torch.cuda.Stream]:
    """A green context of `num_sms` SMs and a stream whose kernels run only on them (CUDA 12.4+ green contexts:
    a stream priority only orders *waiting* blocks, it cannot take SMs back from a long-running kernel)."""
    from torch.cuda.green_contexts import GreenContext

    ctx = GreenContext.create(num_sms=num_sms, device_id=torch.cuda.current_device())
    return ctx, ctx.Stream()


def _dreamer(kind: str, batch: int, device: torch.device, stream: torch.cuda.Stream) -> Callable[[], int]:
    """One call = one batch of dreamed frames (the CUDA-graphed sampler, set up and captured on `stream`);
    returns the frame count."""
    from metabonk.bench.world import _graphed, _inputs, _sampler_fn, random_world
    from metabonk.world.config import diamond_atari_config

    model = random_world(diamond_atari_config(), device)
    if kind.startswith("fused"):
        from metabonk.world.fused_unet import fuse_denoiser

        fuse_denoiser(model, "fp8" if kind == "fused_fp8" else "bf16")
        dtype = torch.float32
    else:
        model = model.to(dtype=torch.bfloat16, memory_format=torch.channels_last)
        dtype = torch.bfloat16
    ctx, acts = _inputs(model.config, batch, device, dtype)
    torch.cuda.synchronize()
    with torch.inference_mode(), torch.cuda.stream(stream):
        fn = _sampler_fn(model, ctx, acts, 3)
        if kind.startswith("fused"):
            with model.denoiser.inner.tuning():  # type: ignore[operator]
                fn()
        replay = _graphed(fn, capture_error_mode="thread_local", stream=stream)
    stream.synchronize()

    def dream() -> int:
        with torch.inference_mode():
            replay()
        return batch

    return dream


def _llm(device: torch.device, prompt_tokens: int, new_tokens: int) -> Callable[[], int]:
    """One call = one greedy decision of `new_tokens` tokens after a `prompt_tokens` prompt; returns tokens."""
    try:
        from transformers import LlamaConfig, LlamaForCausalLM
    except ImportError as e:
        raise MetabonkError("bench unified's LLM load needs transformers (or pass --no-llm)") from e
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M)).to(device, torch.bfloat16).eval()
    ids = torch.randint(0, SMOLLM2_135M["vocab_size"], (1, prompt_tokens), device=device)

    def decide() -> int:
        with torch.inference_mode():
            model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                           min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
        return new_tokens

    return decide


def _pct(x: list[float]) -> dict[str, float]:
    a = np.asarray(x) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "max_ms": float(a.max()), "mean_ms": float(a.mean())} if len(a) else {}


def _ticks(tick: Callable[[], Any], stream: torch.cuda.Stream, seconds: float, hz: float) -> dict[str, Any]:
    """Paced System 1 ticks on `stream` for `seconds`: latency of each and the achieved rate."""
    period, lat = 1.0 / hz, []
    with torch.cuda.stream(stream):
        for _ in range(20):  # warm-up
            tick()
        stream.synchronize()
        start = time.perf_counter()
        next_t = start
        while (now := time.perf_counter()) - start < seconds:
            if now < next_t:
                time.sleep(next_t - now)
            t = time.perf_counter()
            tick()
            stream.synchronize()
            lat.append(time.perf_counter() - t)
            next_t += period
            if time.perf_counter() > next_t + period:  # a tick overran: do not burst to catch up
                next_t = time.perf_counter()
        wall = time.perf_counter() - start
    return {"ticks": len(lat), "ticks_per_s": len(lat) / wall, **_pct(lat)}


def run_unified(args: UnifiedArgs, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The phases' figures (see the module docstring)."""
    if not torch.cuda.is_available():
        raise MetabonkError("bench unified measures one GPU shared by three workloads: it needs CUDA")
    if args.dream not in DREAMS:
        raise MetabonkError(f"--dream must be one of {', '.join(DREAMS)}; got '{args.dream}'")
    from metabonk.bench.policy import _stepper
    from metabonk.policy.agent import Agent
    from metabonk.policy.config import PolicyConfig

    device = torch.device("cuda")
    low, high = torch.cuda.Stream.priority_range()
    s1_high = torch.cuda.Stream(device, priority=high)
    s1_default = torch.cuda.Stream(device, priority=0)
    green = None
    if args.dream_sms is not None:  # the dream confined to its SMs (a green context's stream has default priority)
        green, dream_stream = green_stream(args.dream_sms)
    else:
        dream_stream = torch.cuda.Stream(device, priority=low)
    llm_stream = torch.cuda.Stream(device, priority=0)
    sys.setswitchinterval(args.switch_interval_s)
    torch.manual_seed(0)
    agent = Agent(PolicyConfig(core="cfc")).to(device).eval()
    with torch.no_grad():
        tick = _stepper(agent, 1, device, "agent", graph=True, capture_error_mode="thread_local")
    log("System 1 captured")
    t = time.perf_counter()
    dreamer = _Loop(_dreamer(args.dream, args.dream_batch, device, dream_stream), dream_stream)
    dream_setup_s = time.perf_counter() - t
    log(f"dream ({args.dream}, batch {args.dream_batch}) ready in {dream_setup_s:.0f} s")
    llm = _Loop(_llm(device, args.llm_prompt_tokens, args.llm_new_tokens), llm_stream) if args.llm else None
    for loop in (dreamer, llm):
        if loop is not None:
            loop.start()
    phases: dict[str, Any] = {}

    def measure(name: str, s1: torch.cuda.Stream | None, loads: tuple[_Loop | None, ...]) -> None:
        on = [x for x in loads if x is not None]
        for x in on:
            x.busy.set()
        time.sleep(0.5)
        for x in (dreamer, llm):
            if x is not None:
                x.take()
        t0 = time.perf_counter()
        row: dict[str, Any] = {}
        if s1 is not None:
            row["system1"] = _ticks(tick, s1, args.seconds, args.hz)
        else:
            time.sleep(args.seconds)
        wall = time.perf_counter() - t0
        units_d, _ = dreamer.take()
        if dreamer in on:
            row["dream_frames_per_s"] = units_d / wall
        if llm is not None:
            units_l, lat_l = llm.take()
            if llm in on:
                row["llm_tokens_per_s"] = units_l / wall
                row["llm_decision"] = _pct(lat_l) | {"decisions": len(lat_l)}
        for x in on:
            x.busy.clear()
        time.sleep(0.3)
        phases[name] = row
        s1r = row.get("system1", {})
        log(f"{name:28s} S1 p50 {s1r.get('p50_ms', float('nan')):.3f} p99 {s1r.get('p99_ms', float('nan')):.3f} ms "
            f"{s1r.get('ticks_per_s', 0):.1f} ticks/s | dream {row.get('dream_frames_per_s', 0):,.0f} frames/s | "
            f"LLM {row.get('llm_tokens_per_s', 0):.0f} tokens/s")

    measure("system1_alone", s1_high, ())
    measure("dream_alone", None, (dreamer,))
    # System 1 captured again while the dream thread launches: the thread-local capture mode must hold
    dreamer.busy.set()
    time.sleep(0.5)
    with torch.no_grad():
        tick = _stepper(agent, 1, device, "agent", graph=True, capture_error_mode="thread_local")
    dreamer.busy.clear()
    log("System 1 captured again while dreaming")
    measure("system1_high+dream", s1_high, (dreamer,))
    if llm is not None:
        measure("llm_alone", None, (llm,))
        measure("system1_high+dream+llm", s1_high, (dreamer, llm))
        measure("system1_default+dream+llm", s1_default, (dreamer, llm))
    else:
        measure("system1_default+dream", s1_default, (dreamer,))
    for x in (dreamer, llm):
        if x is not None:
            x.stop.set()
            x.join(timeout=30)
    errors = {n: x.error for n, x in (("dream", dreamer), ("llm", llm)) if x is not None and x.error}
    full = "system1_high+dream+llm" if llm is not None else "system1_high+dream"
    p99 = phases[full]["system1"]["p99_ms"]
    return {
        "settings": asdict(args),
        "stream_priorities": {"low": low, "high": high},
        "sm_count": torch.cuda.get_device_properties(device).multi_processor_count,
        "dream_green_context": green is not None,
        "system1_params": sum(p.numel() for p in agent.parameters()),
        "dream_setup_s": dream_setup_s,
        "phases": phases,
        "errors": errors,
        "target": {"system1_p99_ms_max": 0.5, "phase": full, "p99_ms": p99, "met": bool(p99 <= 0.5 and not errors)},
    }


if __name__ == "__main__":
    import json

    from metabonk.common.results import write_result

    sms = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3] != "all" else None
    res = run_unified(UnifiedArgs(seconds=float(sys.argv[2]) if len(sys.argv) > 2 else 15.0, dream_sms=sms))
    if len(sys.argv) > 1:
        write_result(sys.argv[1], res, torch.device("cuda"))
    print(json.dumps(res["target"]))
