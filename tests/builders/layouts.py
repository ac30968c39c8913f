"""Jina's four published jina-embeddings-v5-text layouts (docs/model-facts.md).

* (a) ``build_base``: base repo, un-prefixed backbone keys, PEFT adapters per task.
* (b) ``build_merged``: merged per-task repo, un-prefixed keys, no adapters.
* (c) ``build_mlx_task``: per-task "-mlx" folder, ``model.``-prefixed merged weights.
* (d) ``build_mlx_unified``: unified "-mlx" folder, ``model.``-prefixed base weights
  plus ``adapters/<task>/adapter_model.safetensors``.

Each writes into ``root`` and returns it; (b)-(d) are derived from an (a) folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterable

import torch

from builders.configs import backbone_arch, hf_config, jina_config, mlx_config
from builders.files import (
    copy_if_exists,
    file_dtype,
    read_safetensors,
    write_dummies,
    write_json,
    write_safetensors,
)
from builders.reference import merged_state_dict
from builders.tokenizers import default_vocab
from builders.weights import check_backbone_keys, random_backbone, write_adapters

TASKS = ("retrieval", "text-matching", "classification", "clustering")
# the task that conftest's derived per-task fixtures (merged, -mlx) were built for
MERGED_TASKS = {"qwen3": "retrieval", "eurobert": "text-matching"}
_REMOTE_CODE = [
    "modeling_jina_embeddings_v5.py",
    "configuration_jina_embeddings_v5.py",
    "custom_st.py",
]


def build_base(
    root: Path,
    arch: str,
    *,
    tokenizer: Path,
    seed: int = 0,
    rope_form: str = "parameters",
    tasks: Iterable[str] = TASKS,
    r: int = 4,
    lora_alpha: float = 8,
    use_rslora: bool = False,
    lora_strength: float = 0.5,
    vocab_size: int | None = None,
    config_overrides: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
    st_config: bool = True,
) -> Path:
    """Write a Jina base repo (layout 2.1) into ``root`` and return ``root``.

    ``rope_form``: "parameters" (transformers-5 ``rope_parameters``, no top-level
    theta), "top" (top-level ``rope_theta``, ``rope_scaling: null``) or "top-linear"
    (top-level theta, ``rope_scaling {"type": "linear", "factor": 1.0}``).
    ``vocab_size`` defaults to QWEN_VOCAB / LLAMA_VOCAB for the real tokenizers and
    TINY_VOCAB otherwise. ``dtype`` is the dtype of the weight and adapter files.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tasks = tuple(tasks)
    tokenizer = Path(tokenizer)
    if vocab_size is None:
        vocab_size = default_vocab(tokenizer)
    config = hf_config(arch, vocab_size=vocab_size, **(config_overrides or {}))

    model = random_backbone(config, arch, seed)
    state = model.state_dict()
    check_backbone_keys(state, arch, config.num_hidden_layers)  # no prefix, no lm_head
    write_safetensors(
        root / "model.safetensors", {k: v.to(dtype) for k, v in state.items()}
    )
    if dtype != torch.float32:  # adapters are trained on what the file holds
        model.load_state_dict(read_safetensors(root / "model.safetensors"))
        model.float()

    write_json(root / "config.json", jina_config(config, arch, rope_form, tasks))
    shutil.copyfile(tokenizer, root / "tokenizer.json")
    if st_config:
        _write_sentence_transformers_files(root)
    write_dummies(root, _REMOTE_CODE)
    write_adapters(
        root / "adapters",
        model,
        tasks,
        seed=seed,
        r=r,
        lora_alpha=lora_alpha,
        use_rslora=use_rslora,
        strength=lora_strength,
        dtype=dtype,
    )
    return root


def _write_sentence_transformers_files(root: Path) -> None:
    write_json(
        root / "config_sentence_transformers.json",
        {
            "prompts": {"query": "Query: ", "document": "Document: "},
            "default_prompt_name": "document",
            "similarity_fn_name": "cosine",
        },
    )
    write_json(
        root / "modules.json",
        [{"idx": 0, "name": "0", "path": "", "type": "custom_st.Transformer"}],
    )


def build_merged(
    root: Path, base: Path, task: str, *, dtype: torch.dtype | None = None
) -> Path:
    """Merged per-task repo (layout 2.2): un-prefixed merged weights, no adapters.

    ``dtype`` defaults to the dtype of the base's weight file.
    """
    root, base = Path(root), Path(base)
    root.mkdir(parents=True, exist_ok=True)
    dtype = dtype or file_dtype(base)
    state = merged_state_dict(base, task)
    write_safetensors(
        root / "model.safetensors", {k: v.to(dtype) for k, v in state.items()}
    )
    data = json.loads((base / "config.json").read_text())
    data.pop("task_names", None)
    write_json(root / "config.json", data)
    copy_if_exists(base, root, ["tokenizer.json", "config_sentence_transformers.json"])
    return root


def build_mlx_task(
    root: Path,
    base: Path,
    task: str,
    *,
    model_type: str | None = None,
    dtype: torch.dtype = torch.float32,
    with_lm_head: bool = False,
) -> Path:
    """Per-task -mlx folder (layout 2.3): ``model.``-prefixed merged weights.

    ``model_type`` defaults to the backbone's ("qwen3" / "eurobert"). The config is
    the full backbone config with top-level ``rope_theta`` and ``architectures: null``.
    ``with_lm_head`` adds a tied ``lm_head.weight`` copy that loaders must drop.
    """
    root, base = Path(root), Path(base)
    root.mkdir(parents=True, exist_ok=True)
    model_type = model_type or backbone_arch(base)
    state = {
        f"model.{k}": v.to(dtype) for k, v in merged_state_dict(base, task).items()
    }
    if with_lm_head:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    write_safetensors(root / "model.safetensors", state, metadata={"format": "mlx"})
    write_json(root / "config.json", mlx_config(base, model_type, minimal=False))
    shutil.copyfile(base / "tokenizer.json", root / "tokenizer.json")
    write_dummies(root, ["model.py"])
    return root


def build_mlx_unified(
    root: Path,
    base: Path,
    *,
    with_adapter_config: bool = True,
    dtype: torch.dtype = torch.float16,
    model_type: str | None = None,
) -> Path:
    """Unified -mlx folder (layout 2.4): ``model.``-prefixed base weights + adapters.

    ``adapters/<task>/adapter_model.safetensors`` holds the base repo's PEFT tensors
    with the same keys, cast to ``dtype``; ``adapter_config.json`` is copied only when
    ``with_adapter_config`` (whether Jina ships it is unknown: docs/model-facts.md).
    The config is minimal (shapes and rope_theta only, as in nano's 378-byte file).
    """
    root, base = Path(root), Path(base)
    root.mkdir(parents=True, exist_ok=True)
    model_type = model_type or backbone_arch(base)
    state = read_safetensors(base / "model.safetensors")
    write_safetensors(
        root / "model.safetensors",
        {f"model.{k}": v.to(dtype) for k, v in state.items()},
        metadata={"format": "mlx"},
    )
    write_json(root / "config.json", mlx_config(base, model_type, minimal=True))
    shutil.copyfile(base / "tokenizer.json", root / "tokenizer.json")
    write_dummies(root, ["model.py", "utils.py"])
    for task in json.loads((base / "config.json").read_text())["task_names"]:
        src, dst = base / "adapters" / task, root / "adapters" / task
        dst.mkdir(parents=True, exist_ok=True)
        tensors = read_safetensors(src / "adapter_model.safetensors")
        write_safetensors(
            dst / "adapter_model.safetensors",
            {k: v.to(dtype) for k, v in tensors.items()},
        )
        if with_adapter_config:
            shutil.copyfile(src / "adapter_config.json", dst / "adapter_config.json")
    return root
