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

from ..checkpoint.adapters import Adapter
from ..checkpoint.quantization import input_size

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


def add_adapters(model: nn.Module, adapters: list[Adapter]) -> None:
    """Wrap every layer an adapter touches in a `LoRALinear`; no weight is modified."""
    modules = dict(model.named_modules())
    # Keep adapters in the dtype the model computes in (the float weights' dtype).
    dtype = model.norm.weight.dtype
    per_layer: dict[str, dict[str, dict[str, mx.array]]] = {}
    errors = []
    for adapter in adapters:
        for key, (a, b) in adapter.pairs.items():
            path = key.removesuffix(".weight")
            module = modules.get(path)
            if not isinstance(module, (nn.Linear, nn.QuantizedLinear)):
                errors.append(f"{adapter.task}: {key}: no such linear layer")
                continue
            shape = (module.weight.shape[0], input_size(module))
            if (b.shape[0], a.shape[1]) != shape:
                errors.append(
                    f"{adapter.task}: {key}: B@A is {(b.shape[0], a.shape[1])}, base is {shape}"
                )
                continue
            # Fold the scale into B in float32 so the call does one add.
            b = (adapter.scale * b.astype(mx.float32)).astype(dtype)
            per_layer.setdefault(path, {})[adapter.task] = {
                "a": a.astype(dtype),
                "b": b,
            }
    if errors:
        raise ValueError(
            "The adapters do not fit this model:\n  " + "\n  ".join(errors)
        )
    for path, lora in per_layer.items():
        parent, name = path.rsplit(".", 1)
        setattr(modules[parent], name, LoRALinear(modules[path], lora))
    mx.eval(model.parameters())
