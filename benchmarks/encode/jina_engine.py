"""mlx_jina as users call it: `load(folder, ...)`, then `encode(texts)`, tokenization
included."""

import time

import mlx_jina  # before MLX: on Linux it loads the system BLAS
import mlx.core as mx

from .batch_plans import our_plan
from .corpus import Workload
from .passes import Pass
from .shapes import Model

# load() arguments per setting; bits= quantizes the float32 weights at load, so the
# quantized rows run float32 activations.
LOAD = {
    "float32": {},
    "bfloat16": {"dtype": "bfloat16"},
    "float16": {"dtype": "float16"},
    "8-bit": {"bits": 8},
    "4-bit": {"bits": 4},
}


class MlxJina:
    def __init__(self, model: Model, setting: str, batches=None):
        self.model, self.setting = model, setting

    def load(self) -> None:
        self.embedder = mlx_jina.load(self.model.folder, **LOAD[self.setting])

    def encode(self, work: Workload, rows: list[int]) -> Pass:
        texts = [work.texts[i] for i in rows]
        t = time.perf_counter()
        vectors = self.embedder.encode(texts)
        seconds = time.perf_counter() - t
        stats = self.embedder.last_stats
        # The batches `encode` ran (its own plan at its defaults), for the FLOP count.
        plan = our_plan([work.ids[i] for i in rows])
        batches = [[rows[j] for j in b] for b in plan]
        return Pass(seconds, vectors, batches, stats.real_tokens, stats.padded_tokens)

    def query(self, work: Workload) -> None:
        self.embedder.encode(work.query)

    def reset_peak(self) -> None:
        mx.clear_cache()
        mx.reset_peak_memory()

    def peak_mib(self) -> float | None:
        return mx.get_peak_memory() / 2**20
