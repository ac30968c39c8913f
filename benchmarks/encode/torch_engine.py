"""transformers on torch (CPU, float32): the backbone (`Qwen3Model` / `EuroBertModel`)
with last-token pooling and normalization, as sentence-transformers runs a
jina-embeddings-v5 model, on pre-tokenized batches."""

import numpy as np
from checkpoint import transformers_model

from .passes import PretokenizedPeer
from .shapes import Model


class Transformers(PretokenizedPeer):
    def __init__(
        self, model: Model, setting: str, batches: list[list[int]], threads: int
    ):
        self.model, self.setting, self.batches = model, setting, batches
        self.threads = threads

    def load(self) -> None:
        import torch

        torch.set_num_threads(self.threads)
        self.net = transformers_model(self.model.folder, self.model.arch)

    def embed(self, rows: list[list[int]]) -> np.ndarray:
        import torch

        width = max(map(len, rows))
        x = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            x[r, : len(row)] = torch.tensor(row)
        lengths = torch.tensor([len(r) for r in rows])
        mask = (torch.arange(width)[None] < lengths[:, None]).long()
        with torch.inference_mode():
            h = self.net(input_ids=x, attention_mask=mask).last_hidden_state
        pooled = h[torch.arange(len(rows)), lengths - 1]
        return torch.nn.functional.normalize(pooled, dim=-1).numpy()

    def reset_peak(self) -> None:
        pass

    def peak_mib(self) -> float | None:
        return None  # torch has no counter like MLX's; see the process's peak RSS
