"""A captured CUDA graph bundled with the tensors it reads: replaying it is only safe while they are alive.

A graph replays fixed device addresses. If the inputs it was captured on are freed (e.g. they were locals of the
function that captured it), the caching allocator hands their memory to later allocations, and the graph reads
whatever those wrote there (seen: an embedding lookup reading another model's weights as indices).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class GraphReplay:
    """Callable: replay `graph` on the current stream, run `after` (e.g. carry a state), return `out`."""

    def __init__(self, graph: torch.cuda.CUDAGraph, out: Any, keep: tuple[Any, ...],
                 after: Callable[[], object] | None = None) -> None:
        self.graph, self.out, self.keep, self.after = graph, out, keep, after

    def __call__(self) -> Any:
        self.graph.replay()
        if self.after is not None:
            self.after()
        return self.out
