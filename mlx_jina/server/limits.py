"""The server's limits: each one's default, its unit and its `mlx-jina serve` help, once.

`cli.py` builds the serve flags from these fields and the connection layer reads its
defaults here; nothing else spells a default. Imports nothing beyond the standard library,
so `mlx-jina --help` stays fast without the server extra.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Models loaded (or loading) at once, `--max-loaded-models`: Ollama's default on one GPU.
DEFAULT_MAX_LOADED = 3
# unit -> how --help shows a default
SHOWN = {
    "count": str,
    "bytes": lambda v: f"{v // 2**20} MiB" if v and v % 2**20 == 0 else str(v),
    "seconds": lambda v: f"{v:g}",
    "seconds or 0": lambda v: f"{v:g}" if v else "0 (no limit)",
}


def limit(default: Any, unit: str, help: str) -> Any:
    return field(default=default, metadata={"unit": unit, "help": help})


@dataclass
class Limits:
    """Per-request limits, the worker's batching budget and the connection limits."""

    max_batch_tokens: int = limit(
        16384, "count", "tokens per worker batch and forward pass; a longer input runs one "
        "layer at a time, so short requests are served between its layers",
    )  # fmt: skip
    max_queue: int = limit(256, "count", "requests waiting for the worker; more get 429")
    max_inputs: int = limit(2048, "count", "inputs per request (OpenAI's limit)")
    max_body_bytes: int = limit(16 * 2**20, "bytes", "request body size; larger gets 413")
    read_timeout: float = limit(
        30.0, "seconds", "seconds a client has to send a request's headers, and again its "
        "body; slower requests get 408",
    )  # fmt: skip
    request_timeout: float | None = limit(
        300.0, "seconds or 0", "seconds of work per request; after that its remaining inputs "
        "are dropped and it gets 504; 0 for no limit",
    )  # fmt: skip
    cache_limit: int = limit(
        256 * 2**20, "bytes", "freed GPU/CPU buffers MLX keeps for reuse; emptied after 1 s idle"
    )
    # macOS allows a process 256 open files by default.
    max_connections: int = limit(
        128, "count", "open connections; at the cap a connection still waiting for its "
        "request is closed to make room, and only when every one holds a whole request does "
        "a newcomer get 503",
    )  # fmt: skip
    max_connections_per_client: int = limit(
        64, "count", "open connections from one client address (loopback excepted: every "
        "local client shares it), under the same rule",
    )  # fmt: skip


def help_text(name: str) -> str:
    """A limit's --help line, its default included."""
    spec = Limits.__dataclass_fields__[name]
    return f"{spec.metadata['help']} (default: {SHOWN[spec.metadata['unit']](spec.default)})"
