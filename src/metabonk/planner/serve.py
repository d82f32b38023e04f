"""`metabonk serve-llm`: command lines of the embedded GGUF server (llama.cpp behind `llm_guard`) and vLLM,
and `run_server`, which runs one as a child that never outlives the parent (SIGTERM/SIGHUP are passed on, and
on Linux the child gets SIGTERM when the parent dies)."""

from __future__ import annotations

import ctypes
import importlib.util
import shutil
import signal
import subprocess
import sys
import threading

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
    cors_origins: list[str] | None = None,
    max_body_bytes: int | None = None,
) -> list[str]:
    """`python -m metabonk.planner.llm_guard` serving the bundled SmolLM2 (or `model`, a GGUF path) on loopback:
    llama.cpp's server without CORS (unless `cors_origins`), with a body size limit and an API key from
    $METABONK_LLM_API_KEY."""
    gguf = find_gguf(model)
    extra = [a for origin in cors_origins or [] for a in ("--cors_origin", origin)]
    if max_body_bytes is not None:
        extra += ["--max_body_bytes", str(max_body_bytes)]
    return [
        sys.executable,
        "-m",
        "metabonk.planner.llm_guard",
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
        *extra,
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

        spec: dict[str, object] = {"model": speculative_model, "num_speculative_tokens": num_speculative_tokens}
        if speculative_model == "ngram":  # prompt lookup: drafts are n-grams of the prompt, no draft model
            spec = {"method": "ngram", "num_speculative_tokens": num_speculative_tokens, "prompt_lookup_max": 4}
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


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGTERM when the parent dies (even by SIGKILL)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the signal forwarding below still covers SIGTERM / SIGHUP / Ctrl-C


def run_server(cmd: list[str], env: dict[str, str] | None = None, grace_s: float = 10.0) -> int:
    """Run the server as a child in the foreground until it exits; SIGTERM/SIGHUP to this process are passed
    on to it, and it is stopped (terminate, then kill after `grace_s`) whenever this function returns.
    Returns its exit code."""
    try:
        child = subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    except (FileNotFoundError, PermissionError) as e:
        raise MetabonkError(f"cannot start {cmd[0]}: {e}") from e
    forwarded = (signal.SIGTERM, signal.SIGHUP)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, lambda signum, _frame: child.send_signal(signum)) for s in forwarded}
    try:
        return child.wait()
    except KeyboardInterrupt:  # the terminal sent SIGINT to the child too; give it time to shut down
        return child.wait(timeout=grace_s) if _wait(child, grace_s) else -2
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if child.poll() is None:
            child.terminate()
            if not _wait(child, grace_s):
                child.kill()
                child.wait()


def _wait(child: subprocess.Popen[bytes], timeout: float) -> bool:
    try:
        child.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        return False
