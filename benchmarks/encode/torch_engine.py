"""transformers on torch: the backbone (`Qwen3Model` / `EuroBertModel`) with last-token
pooling and normalization, as sentence-transformers runs a jina-embeddings-v5 model, on
pre-tokenized batches. CPU float32 here; the GPU check runs it on CUDA in bfloat16 with
an adapter merged."""

import numpy as np
from checkpoint import load_backbone

from .passes import PretokenizedPeer
from .shapes import Model


class Transformers(PretokenizedPeer):
    def __init__(self, model: Model, setting: str, batches: list[list[int]],
                 threads: int | None, task: str | None = None, cuda: bool = False):
        self.model, self.setting, self.batches = model, setting, batches
        self.threads, self.task, self.cuda = threads, task, cuda

    def load(self) -> None:
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        net = load_backbone(self.model.folder, self.task)
        if self.cuda:  # the fused kernel, as a GPU user runs it
            net.set_attn_implementation("sdpa")
            net = net.to("cuda", torch.bfloat16)
        self.net = net

    def embed(self, rows: list[list[int]]) -> np.ndarray:
        import torch

        width = max(map(len, rows))
        x = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            x[r, : len(row)] = torch.tensor(row)
        lengths = torch.tensor([len(r) for r in rows])
        mask = (torch.arange(width)[None] < lengths[:, None]).long()
        device = "cuda" if self.cuda else "cpu"
        with torch.inference_mode():
            h = self.net(input_ids=x.to(device), attention_mask=mask.to(device))
            index = torch.arange(len(rows), device=device), lengths.to(device) - 1
            pooled = h.last_hidden_state[index]
            pooled = torch.nn.functional.normalize(pooled.float(), dim=-1)
        return pooled.cpu().numpy()

    def reset_peak(self) -> None:
        pass

    def peak_mib(self) -> float | None:
        return None  # torch has no counter like MLX's; see the process's peak RSS
