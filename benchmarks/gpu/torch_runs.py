"""The same weights, adapter and batches through transformers on torch.

Qwen3Model / EuroBertModel from the same model.safetensors, the "retrieval" adapter
merged by hand in float32 (W += alpha / r * B @ A, as PEFT merges it), attention
`sdpa`, last-token pooling on right-padded batches: the batches mlx_jina ran. On CUDA
in bfloat16; on the CPU (--smoke) in float32, so the path is exercised where CI runs.
"""

import json
import time

import numpy as np

from .setup import TASK, Model


def merged_state(m: Model, torch) -> dict:
    from safetensors.torch import load_file

    state = {k: v.float() for k, v in load_file(str(m.folder / "model.safetensors")).items()}
    adapter = m.folder / "adapters" / TASK
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    scale = cfg["lora_alpha"] / cfg["r"]
    lora = load_file(str(adapter / "adapter_model.safetensors"))
    prefix = "base_model.model."
    for key, a in lora.items():
        if ".lora_A." not in key:
            continue
        b = lora[key.replace(".lora_A.", ".lora_B.")]
        target = key[len(prefix):].replace(".lora_A.weight", ".weight")
        state[target] += scale * (b.float() @ a.float())
    return state


def build_model(m: Model, torch, device: str, dtype):
    from transformers import EuroBertConfig, EuroBertModel, Qwen3Config, Qwen3Model

    config = dict(m.config)
    for key in ("model_type", "architectures", "task_names", "torch_dtype"):
        config.pop(key, None)
    config_class, model_class = {
        "qwen3": (Qwen3Config, Qwen3Model),
        "eurobert": (EuroBertConfig, EuroBertModel),
    }[m.arch]
    cfg = config_class(**config)
    cfg._attn_implementation = "sdpa"
    with torch.device(device):
        model = model_class(cfg)
    model.load_state_dict(merged_state(m, torch), strict=True)
    return model.to(device=device, dtype=dtype).eval()


def embed(model, torch, rows: list[list[int]], device: str) -> np.ndarray:
    lengths = [len(r) for r in rows]
    width = max(lengths)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
    h = model(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
    last = torch.tensor(lengths, device=device) - 1
    return h[torch.arange(len(rows), device=device), last].float().cpu().numpy()


def run_torch(m: Model, ids, batches, mlx_vectors: np.ndarray) -> dict:
    """tokens/s over mlx_jina's batches and the cosine of each vector with mlx_jina's
    (the mlx_jina run in the same dtype)."""
    import torch

    cuda = torch.cuda.is_available()
    device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    t = time.perf_counter()
    model = build_model(m, torch, device, dtype)
    load_s = time.perf_counter() - t
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with torch.inference_mode():
        embed(model, torch, [ids[i] for i in batches[-1]], device)  # warm-up
        sync()
        t = time.perf_counter()
        parts = [embed(model, torch, [ids[i] for i in b], device) for b in batches]
        sync()
        seconds = time.perf_counter() - t
    order = np.argsort([i for b in batches for i in b])
    vectors = np.concatenate(parts)[order]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cos = (vectors * mlx_vectors).sum(1)
    del model
    if cuda:
        torch.cuda.empty_cache()
    return {
        "device": device,
        "dtype": str(dtype).removeprefix("torch."),
        "load_s": round(load_s, 2),
        "seconds": round(seconds, 3),
        "tokens_per_s": round(sum(map(len, ids)) / seconds, 1),
        "cosine_min": round(float(cos.min()), 6),
        "cosine_mean": round(float(cos.mean()), 6),
    }
