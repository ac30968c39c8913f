"""The engines of the table, and `run_engine`, which turns one into a table row.

An engine is plain data until `load()` (a Model, a label, settings), so a later runner
can send it to a fresh process. `encode` is one timed pass over the corpus and `query`
one single-query call, so rounds of several engines can interleave.
"""

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import mlx.core as mx
import mlx.nn as nn
import mlx_jina
import numpy as np

from checkpoint import transformers_model
from internals import plan_batches

from .corpus import Workload
from .measure import TORCH_THREADS, batch_flops, p50_ms
from .shapes import Model


@dataclass
class Pass:
    """One timed pass over the corpus."""

    seconds: float
    vectors: np.ndarray  # in input order, unit length
    batches: list[list[int]]  # input indices of each forward pass
    real_tokens: int
    padded_tokens: int


@dataclass
class Row:
    engine: str
    model: str
    weights: str
    tokens_per_s: float
    padding: float | None
    mm_fraction: float | None
    peak_mib: float | None
    load_s: float
    p50_ms: float
    vectors: np.ndarray | None = None
    peer: str | None = None  # the ratio column this row is the base of


class Engine(Protocol):
    model: Model
    name: str  # the table's engine column
    label: str  # the table's weights column
    blocked: bool  # attention in query blocks, for the FLOP count
    uses_mlx: bool  # has MLX's peak-memory counter
    peer: str | None  # the ratio column its rows are the base of

    def load(self) -> None: ...
    def warm_up(self, work: Workload) -> None: ...
    def encode(self, work: Workload) -> Pass: ...
    def query(self, work: Workload) -> None: ...
    def unload(self) -> None: ...


def padded_pass(seconds, parts, batches, ids) -> Pass:
    """A Pass from per-batch vectors of batches padded to their longest row."""
    order = np.argsort([i for b in batches for i in b])
    padded = sum(len(b) * max(len(ids[i]) for i in b) for b in batches)
    real = sum(map(len, ids))
    return Pass(seconds, np.concatenate(parts)[order], batches, real, padded)


@dataclass
class MlxJina:
    """mlx_jina as users call it: `encode(texts)`, tokenization included."""

    model: Model
    label: str
    load_kwargs: dict = field(default_factory=dict)
    name = "mlx_jina"
    blocked = True  # CPU attention in query blocks
    uses_mlx = True
    peer = None

    def load(self) -> None:
        kwargs = dict(self.load_kwargs)
        try:
            self.embedder = mlx_jina.load(self.model.folder, **kwargs)
        except ValueError:
            # An older mlx_jina, without load(bits=): quantize the float model.
            if "bits" not in kwargs:
                raise
            bits = kwargs.pop("bits")
            self.embedder = mlx_jina.load(self.model.folder, **kwargs)
            nn.quantize(self.embedder.model, group_size=64, bits=bits)
            mx.eval(self.embedder.model.parameters())
            self.label += " (nn.quantize)"

    def warm_up(self, work: Workload) -> None:
        self.embedder.encode(work.texts[:8])

    def encode(self, work: Workload) -> Pass:
        t = time.perf_counter()
        vectors = self.embedder.encode(work.texts)
        seconds = time.perf_counter() - t
        stats = self.embedder.last_stats
        # The batches `encode` ran, for the FLOP count: its own plan at its defaults.
        plan = plan_batches([len(r) for r in work.ids], 32, 8192)
        return Pass(
            seconds, vectors, plan.batches, stats.real_tokens, stats.padded_tokens
        )

    def query(self, work: Workload) -> None:
        self.embedder.encode(work.query)

    def unload(self) -> None:
        self.embedder = None


def mlx_embeddings_folder(folder: Path) -> Path:
    """The same weights with the config mlx-embeddings expects (model_type qwen3)."""
    out = folder.parent / (folder.name + "-mlx-embeddings")
    out.mkdir(exist_ok=True)
    config = json.loads((folder / "config.json").read_text())
    config |= {"model_type": "qwen3", "architectures": ["Qwen3Model"]}
    (out / "config.json").write_text(json.dumps(config))
    if not (out / "model.safetensors").exists():
        (out / "model.safetensors").symlink_to(folder / "model.safetensors")
    return out


@dataclass
class MlxEmbeddings:
    """mlx-embeddings' Qwen3 model (pure MLX) on pre-tokenized batches."""

    model: Model
    label: str
    peer: (
        str  # "naive": batches of 32 in input order; "sorted": by length, 4,096 tokens
    )
    name = "mlx-embeddings 0.1.0"
    blocked = False  # MLX's own attention: full score matrices
    uses_mlx = True

    def load(self) -> None:
        from mlx_embeddings.utils import load_model

        self.net = load_model(mlx_embeddings_folder(self.model.folder))

    def embed(self, rows: list[list[int]]) -> mx.array:
        width = max(map(len, rows))
        x = np.zeros((len(rows), width), np.int32)
        m = np.zeros((len(rows), width), np.int32)
        for r, row in enumerate(rows):
            x[r, : len(row)], m[r, : len(row)] = row, 1
        out = self.net(mx.array(x), attention_mask=mx.array(m)).text_embeds
        mx.eval(out)
        return out

    def warm_up(self, work: Workload) -> None:
        self.embed(work.ids[:4])

    def encode(self, work: Workload) -> Pass:
        ids = work.ids
        if self.peer == "naive":
            batches = [
                list(range(i, min(i + 32, len(ids)))) for i in range(0, len(ids), 32)
            ]
        else:
            batches = sorted_batches(ids, 4096)
        t = time.perf_counter()
        parts = [self.embed([ids[i] for i in b]) for b in batches]
        seconds = time.perf_counter() - t
        return padded_pass(seconds, [np.array(p) for p in parts], batches, ids)

    def query(self, work: Workload) -> None:
        self.embed([work.query_ids])

    def unload(self) -> None:
        self.net = None


def sorted_batches(ids: list[list[int]], max_tokens: int) -> list[list[int]]:
    """A careful user's batches: longest first, at most `max_tokens` padded tokens."""
    batches: list[list[int]] = []
    for i in sorted(range(len(ids)), key=lambda i: -len(ids[i])):
        if batches and (len(batches[-1]) + 1) * len(ids[batches[-1][0]]) <= max_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


@dataclass
class Transformers:
    """transformers on torch (CPU): length-sorted batches of 32, like
    sentence-transformers."""

    model: Model
    label: str = "float32"
    blocked = False
    uses_mlx = False
    peer = "torch"

    @property
    def name(self) -> str:
        import transformers

        return f"transformers {transformers.__version__} (torch CPU)"

    def load(self) -> None:
        import torch

        torch.set_num_threads(TORCH_THREADS)
        self.net = transformers_model(self.model.folder, self.model.arch)

    def embed(self, rows: list[list[int]]) -> np.ndarray:
        import torch

        width = max(map(len, rows))
        x = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            x[r, : len(row)] = torch.tensor(row)
        lengths = torch.tensor([len(r) for r in rows])
        mask = (torch.arange(width)[None] < lengths[:, None]).long()
        with torch.no_grad():
            h = self.net(input_ids=x, attention_mask=mask).last_hidden_state
        pooled = h[torch.arange(len(rows)), lengths - 1]
        return torch.nn.functional.normalize(pooled, dim=-1).numpy()

    def warm_up(self, work: Workload) -> None:
        self.embed(work.ids[:4])

    def encode(self, work: Workload) -> Pass:
        ids = work.ids
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        batches = [order[i : i + 32] for i in range(0, len(order), 32)]
        t = time.perf_counter()
        parts = [self.embed([ids[i] for i in b]) for b in batches]
        return padded_pass(time.perf_counter() - t, parts, batches, ids)

    def query(self, work: Workload) -> None:
        self.embed([work.query_ids])

    def unload(self) -> None:
        self.net = None


def run_engine(engine: Engine, work: Workload, rate: float | None) -> Row:
    """Load, warm up, one timed pass, p50 of a single query, unload. `rate` is the
    backend's matmul rate for the matmul-rate fraction (None: no fraction)."""
    mx.clear_cache()
    t = time.perf_counter()
    engine.load()
    load_s = time.perf_counter() - t
    engine.warm_up(work)
    mx.reset_peak_memory()
    done = engine.encode(work)
    peak = mx.get_peak_memory() / 2**20 if engine.uses_mlx else None
    fraction = None
    if rate:
        flops = sum(
            batch_flops(
                engine.model, len(b), max(len(work.ids[i]) for i in b), engine.blocked
            )
            for b in done.batches
        )
        fraction = flops / done.seconds / 1e9 / rate
    p50 = p50_ms(lambda: engine.query(work))
    engine.unload()  # the next engine's peak memory must not hold this one's weights
    return Row(
        engine.name,
        engine.model.arch,
        engine.label,
        done.real_tokens / done.seconds,
        done.real_tokens / done.padded_tokens,
        fraction,
        peak,
        load_s,
        p50,
        done.vectors,
        engine.peer,
    )
