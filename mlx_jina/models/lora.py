"""All four task adapters in one model, unmerged: `y = x Wᵀ + scale · (x Aᵀ) Bᵀ`.

The base weights are held once (float or quantized) and never changed. The task is a
context variable read while the forward graph is built, so each thread or asyncio task
picks its own adapter and concurrent calls with different tasks are safe; Jina's
`switch_task` instead rewrites the weights in place.

If the forward pass is ever wrapped in `mx.compile`, the compiled graph would bake in the
task that was active while tracing: key the compile cache by `ACTIVE_TASK.get()` (one
compiled function per task), or leave the LoRA path uncompiled.
"""

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

import mlx.core as mx
import mlx.nn as nn

ACTIVE_TASK: ContextVar[str | None] = ContextVar("mlx_jina_active_task", default=None)


@contextmanager
def using_task(task: str | None) -> Iterator[None]:
    """Make `task`'s adapter the active one in this thread / context only."""
    token = ACTIVE_TASK.set(task)
    try:
        yield
    finally:
        ACTIVE_TASK.reset(token)


class LoRALinear(nn.Module):
    """A float or quantized Linear plus per-task low-rank updates chosen at call time."""

    def __init__(self, base: nn.Module, lora: dict[str, dict[str, mx.array]]):
        super().__init__()
        self.base = base
        # task -> {"a": (r, in), "b": (out, r) with the LoRA scale folded in}
        self.lora = lora

    def __call__(self, x: mx.array) -> mx.array:
        y = self.base(x)
        task = ACTIVE_TASK.get()
        if task is None:
            raise ValueError(
                "This model holds several task adapters; pick one with task=."
            )
        pair = self.lora.get(task)
        if pair is None:  # this task's adapter does not touch this layer
            return y
        return y + (x @ pair["a"].T) @ pair["b"].T
