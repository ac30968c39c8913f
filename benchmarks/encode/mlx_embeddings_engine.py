"""mlx-embeddings 0.1.0 (pure MLX): its Qwen3 model, called as its README's batch example
calls a model (`get_embedding`): padded token ids and their attention mask in, the
`text_embeds` of the output (last-token pooled, normalized) out.

It runs pre-tokenized batches (the same ids as every engine; the README's tokenizer call
would cut our long documents at max_length=512).
"""

import mlx_jina  # noqa: F401 - before MLX: on Linux it loads the system BLAS
import mlx.core as mx
import numpy as np

from .passes import PretokenizedPeer
from .shapes import Model, mlx_embeddings_folder


class MlxEmbeddings(PretokenizedPeer):
    def __init__(self, model: Model, setting: str, batches: list[list[int]]):
        self.model, self.setting, self.batches = model, setting, batches

    def load(self) -> None:
        from mlx_embeddings.utils import load_model

        self.net = load_model(mlx_embeddings_folder(self.model.folder, write=False))

    def embed(self, rows: list[list[int]]) -> np.ndarray:
        width = max(map(len, rows))
        x = np.zeros((len(rows), width), np.int32)
        m = np.zeros((len(rows), width), np.int32)
        for r, row in enumerate(rows):
            x[r, : len(row)], m[r, : len(row)] = row, 1
        out = self.net(mx.array(x), attention_mask=mx.array(m)).text_embeds
        return np.array(out)

    def reset_peak(self) -> None:
        mx.clear_cache()
        mx.reset_peak_memory()

    def peak_mib(self) -> float | None:
        return mx.get_peak_memory() / 2**20
