"""`metabonk serve-llm`: command lines of llama.cpp's OpenAI-compatible server (embedded GGUF) and vLLM."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys

from metabonk.common.errors import MetabonkError
from metabonk.planner.embedded import find_gguf

LLAMA_SERVER_DEPS = (
    "llama_cpp",
    "uvicorn",
    "fastapi",
    "sse_starlette",
    "starlette_context",
    "pydantic_settings",
)


def llama_server_command(
    host: str = "127.0.0.1",
    port: int = 8080,
    model: str | None = None,
    n_threads: int = 2,
    n_ctx: int = 2048,
    alias: str = "smollm2",
) -> list[str]:
    """`python -m llama_cpp.server` serving the bundled SmolLM2 (or `model`, a GGUF path) on loopback."""
    gguf = find_gguf(model)
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--model_alias",
        alias,
        "--host",
        host,
        "--port",
        str(port),
        "--n_threads",
        str(n_threads),
        "--n_ctx",
        str(n_ctx),
    ]


def vllm_command(
    model: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    quantization: str | None = None,
    speculative_model: str | None = None,
    num_speculative_tokens: int = 5,
    max_model_len: int | None = None,
    gpu_memory_utilization: float | None = None,
) -> list[str]:
    """`vllm serve MODEL ...` for GPU deployments (structured outputs are built into vLLM's server)."""
    if not model:
        raise MetabonkError("--backend vllm needs --model (a Hugging Face id or a local model directory)")
    if quantization is not None and quantization not in ("awq", "gptq", "fp8", "bitsandbytes", "awq_marlin"):
        raise MetabonkError(
            f"unsupported --quantization '{quantization}' (awq, gptq, fp8, bitsandbytes, awq_marlin)"
        )
    cmd = ["vllm", "serve", model, "--host", host, "--port", str(port)]
    if quantization:
        cmd += ["--quantization", quantization]
    if speculative_model:
        import json

        spec = {"model": speculative_model, "num_speculative_tokens": num_speculative_tokens}
        cmd += ["--speculative-config", json.dumps(spec)]
    if max_model_len:
        cmd += ["--max-model-len", str(max_model_len)]
    if gpu_memory_utilization:
        cmd += ["--gpu-memory-utilization", str(gpu_memory_utilization)]
    return cmd


def check_backend(backend: str) -> None:
    """Raise a clear MetabonkError when the chosen backend's software is missing."""
    if backend == "llama":
        missing = [m for m in LLAMA_SERVER_DEPS if importlib.util.find_spec(m) is None]
        if missing:
            raise MetabonkError(
                f"llama.cpp server needs {', '.join(missing)}: pip install 'llama-cpp-python[server]'"
            )
    elif backend == "vllm":
        if shutil.which("vllm") is None and importlib.util.find_spec("vllm") is None:
            raise MetabonkError(
                "vLLM is not installed on this machine (it needs a CUDA GPU): pip install vllm, "
                "or use --dry-run to print the command, or --backend llama for the embedded model"
            )
    else:
        raise MetabonkError(f"unknown backend '{backend}' (llama, vllm)")


def run_server(cmd: list[str]) -> int:
    """Run the server in the foreground until it exits or Ctrl-C; returns its exit code."""
    try:
        return subprocess.call(cmd)
    except FileNotFoundError as e:
        raise MetabonkError(f"cannot start {cmd[0]}: {e}") from e
