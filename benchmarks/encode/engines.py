"""The engines a measured process runs, each with `load`, `encode` (one timed pass) and
`query`; none imports MLX or torch at import (a torch process never loads MLX, nor an MLX
one torch).

mlx_jina as users call it: `load`, then `encode(texts)`, tokenization included (or
`encode_ids` on the same ids: the GPU check's random corpus). The peers run the same ids
in given batches: mlx-embeddings 0.1.0's Qwen3 model called as its README's batch example
calls one (padded ids and mask in, `text_embeds` out; its README's tokenizer call would
cut our long documents at 512 tokens), and transformers' backbone with last-token pooling
and normalization, as sentence-transformers runs jina-embeddings-v5 (CPU float32; the GPU
check runs it on CUDA in bfloat16 with an adapter merged).
"""

import time
from dataclasses import dataclass

import numpy as np

from checkpoint import load_backbone

from .jobs import our_plan
from .shapes import Model, mlx_embeddings_folder


@dataclass
class Pass:
    seconds: float
    vectors: np.ndarray  # (rows, dim) in the order of the rows asked for, unit length
    batches: list[list[int]]  # input indices of each forward pass
    real_tokens: int
    padded_tokens: int  # computed, padding included


def mlx():
    """mlx.core, after mlx_jina: on Linux mlx_jina loads the system BLAS before MLX."""
    import mlx_jina  # noqa: F401
    import mlx.core as mx

    return mx


class MlxMemory:
    def reset_peak(self) -> None:
        mx = mlx()
        mx.clear_cache()
        mx.reset_peak_memory()

    def peak_mib(self) -> float | None:
        return mlx().get_peak_memory() / 2**20


class MlxJina(MlxMemory):
    def __init__(self, model: Model, load: dict, pretokenized: bool = False):
        self.model, self.kwargs, self.pretokenized = model, load, pretokenized

    def load(self) -> None:
        import mlx_jina

        self.embedder = mlx_jina.load(self.model.folder, **self.kwargs)

    def encode(self, work, rows: list[int]) -> Pass:
        t = time.perf_counter()
        if self.pretokenized:
            vectors = self.embedder.encode_ids([work.ids[i] for i in rows])
        else:
            vectors = self.embedder.encode([work.texts[i] for i in rows])
        seconds, stats = time.perf_counter() - t, self.embedder.last_stats
        # The batches `encode` ran (its own plan at its defaults), for the FLOP count.
        batches = [[rows[j] for j in b] for b in our_plan([work.ids[i] for i in rows])]
        return Pass(seconds, vectors, batches, stats.real_tokens, stats.padded_tokens)

    def query(self, work) -> None:
        self.embedder.encode(work.query)


class PretokenizedPeer:
    """What the peers share: pre-tokenized ids in the given batches through `embed`."""

    def __init__(self, model: Model, batches: list[list[int]]):
        self.model, self.batches = model, batches

    def embed(self, rows: list[list[int]]) -> np.ndarray:
        raise NotImplementedError

    def encode(self, work, rows: list[int]) -> Pass:
        """Time `embed` over the batches (input indices, all within `rows`); vectors in
        the order of `rows`."""
        t = time.perf_counter()
        parts = [self.embed([work.ids[i] for i in b]) for b in self.batches]
        seconds = time.perf_counter() - t
        where = {i: n for n, i in enumerate(i for b in self.batches for i in b)}
        padded = sum(len(b) * max(len(work.ids[i]) for i in b) for b in self.batches)
        return Pass(seconds, np.concatenate(parts)[[where[i] for i in rows]], self.batches,
                    sum(len(work.ids[i]) for i in rows), padded)  # fmt: skip

    def query(self, work) -> None:
        self.embed([work.query_ids])


def padded(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """The rows padded with 0 to the longest, and their attention mask."""
    x = np.zeros((len(rows), max(map(len, rows))), np.int64)
    mask = np.zeros_like(x)
    for r, row in enumerate(rows):
        x[r, : len(row)], mask[r, : len(row)] = row, 1
    return x, mask


class MlxEmbeddings(MlxMemory, PretokenizedPeer):
    def load(self) -> None:
        mlx()
        from mlx_embeddings.utils import load_model

        self.net = load_model(mlx_embeddings_folder(self.model.folder, write=False))

    def embed(self, rows: list[list[int]]) -> np.ndarray:
        mx = mlx()
        x, mask = padded(rows)
        return np.array(self.net(mx.array(x, mx.int32), attention_mask=mx.array(mask, mx.int32)).text_embeds)


class Transformers(PretokenizedPeer):
    def __init__(self, model: Model, batches: list[list[int]], threads: int | None,
                 task: str | None = None, cuda: bool = False):  # fmt: skip
        super().__init__(model, batches)
        self.threads, self.task, self.device = threads, task, "cuda" if cuda else "cpu"

    def load(self) -> None:
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        self.net = load_backbone(self.model.folder, self.task)
        if self.device == "cuda":  # the fused kernel, as a GPU user runs it
            self.net.set_attn_implementation("sdpa")
            self.net = self.net.to("cuda", torch.bfloat16)

    def embed(self, rows: list[list[int]]) -> np.ndarray:
        import torch

        x, mask = (torch.from_numpy(a).to(self.device) for a in padded(rows))
        with torch.inference_mode():
            h = self.net(input_ids=x, attention_mask=mask).last_hidden_state
            pooled = h[torch.arange(len(rows), device=self.device), mask.sum(1) - 1]
            return torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().numpy()

    def reset_peak(self) -> None:
        pass

    def peak_mib(self) -> float | None:
        return None  # torch has no counter like MLX's; see the process's peak RSS
