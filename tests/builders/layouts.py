"""Jina's four published jina-embeddings-v5-text layouts, written with numpy only.

* (a) ``build_base``: base repo, un-prefixed backbone keys, PEFT adapters per task.
* (b) ``build_merged``: merged per-task repo, un-prefixed keys, no adapters.
* (c) ``build_mlx_task``: per-task "-mlx" folder, ``model.``-prefixed merged weights.
* (d) ``build_mlx_unified``: unified "-mlx" folder, ``model.``-prefixed base weights
  plus ``adapters/<task>/adapter_model.safetensors``.

Each writes into ``root`` and returns it; (b)-(d) are derived from an (a) folder.
``dtype`` is a name: "float32", "float16" or "bfloat16". The merged layouts merge in
float32 numpy (W + scale * B @ A); tests/test_checkpoints.py checks that against peft's
merge_and_unload where the reference stack is installed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from builders.configs import backbone_arch, hf_config, jina_config, mlx_config
from builders.files import (
    copy_if_exists,
    file_dtype,
    read_safetensors,
    write_dummies,
    write_json,
    write_safetensors,
)
from builders.tokenizers import default_vocab
from builders.weights import (
    adapter_config,
    check_backbone_keys,
    lora_scale,
    merge_adapter,
    random_adapter,
    random_backbone,
    read_adapter,
)

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
    dtype: str = "float32",
    st_config: bool = True,
    size: str = "tiny",
) -> Path:
    """Write a Jina base repo (layout a) into ``root`` and return ``root``.

    ``rope_form``: "parameters" (transformers-5 ``rope_parameters``, no top-level
    theta), "top" (top-level ``rope_theta``, ``rope_scaling: null``) or "top-linear"
    (top-level theta, ``rope_scaling {"type": "linear", "factor": 1.0}``).
    ``vocab_size`` defaults to QWEN_VOCAB / LLAMA_VOCAB for the real tokenizers and
    TINY_VOCAB otherwise. ``dtype`` is the dtype of the weight and adapter files.
    ``size``: "tiny" (the tests') or "published" (the real widths, e.g. with
    ``config_overrides={"num_hidden_layers": 2}``). ``tasks=()`` writes no adapters/
    and no task_names: the merged per-task layout (b) with random weights.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tasks = tuple(tasks)
    tokenizer = Path(tokenizer)
    if vocab_size is None:
        vocab_size = default_vocab(tokenizer)
    config = hf_config(arch, vocab_size=vocab_size, size=size, **(config_overrides or {}))

    state = random_backbone(config, arch, seed)
    check_backbone_keys(state, arch, config["num_hidden_layers"])  # no prefix, no lm_head
    write_safetensors(root / "model.safetensors", state, dtype=dtype)
    if dtype != "float32":  # adapters are trained on what the file holds
        state = read_safetensors(root / "model.safetensors")

    data = jina_config(config, arch, rope_form, tasks)
    if not tasks:
        data.pop("task_names")
    write_json(root / "config.json", data)
    shutil.copyfile(tokenizer, root / "tokenizer.json")
    if st_config:
        _write_sentence_transformers_files(root)
    write_dummies(root, _REMOTE_CODE)
    scale = lora_scale(r, lora_alpha, use_rslora)
    for i, task in enumerate(tasks):
        folder = root / "adapters" / task
        tensors = random_adapter(
            state,
            config,
            seed=seed * 1000 + 17 + i,
            r=r,
            scale=scale,
            strength=lora_strength,
        )
        write_safetensors(folder / "adapter_model.safetensors", tensors, dtype=dtype)
        config_json = adapter_config(task, r=r, lora_alpha=lora_alpha, use_rslora=use_rslora)
        write_json(folder / "adapter_config.json", config_json)
    return root


def merged_weights(base: Path, task: str) -> dict[str, np.ndarray]:
    """float32 base + adapters/<task>, merged in numpy; un-prefixed keys."""
    base = Path(base)
    adapter, scale = read_adapter(base / "adapters" / task)
    state = merge_adapter(read_safetensors(base / "model.safetensors"), adapter, scale)
    n_layers = json.loads((base / "config.json").read_text())["num_hidden_layers"]
    check_backbone_keys(state, backbone_arch(base), n_layers)
    return state


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
    root: Path, base: Path, task: str, *, dtype: str | None = None
) -> Path:
    """Merged per-task repo (layout b): un-prefixed merged weights, no adapters.

    ``dtype`` defaults to the dtype of the base's weight file.
    """
    root, base = Path(root), Path(base)
    root.mkdir(parents=True, exist_ok=True)
    dtype = dtype or file_dtype(base)
    write_safetensors(root / "model.safetensors", merged_weights(base, task), dtype=dtype)
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
    dtype: str = "float32",
    with_lm_head: bool = False,
) -> Path:
    """Per-task -mlx folder (layout c): ``model.``-prefixed merged weights.

    ``model_type`` defaults to the backbone's ("qwen3" / "eurobert"). The config is
    the full backbone config with top-level ``rope_theta`` and ``architectures: null``.
    ``with_lm_head`` adds a tied ``lm_head.weight`` copy that loaders must drop.
    """
    root, base = Path(root), Path(base)
    root.mkdir(parents=True, exist_ok=True)
    model_type = model_type or backbone_arch(base)
    state = {f"model.{k}": v for k, v in merged_weights(base, task).items()}
    if with_lm_head:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    write_safetensors(
        root / "model.safetensors", state, metadata={"format": "mlx"}, dtype=dtype
    )
    write_json(root / "config.json", mlx_config(base, model_type, minimal=False))
    shutil.copyfile(base / "tokenizer.json", root / "tokenizer.json")
    write_dummies(root, ["model.py"])
    return root


def build_mlx_unified(
    root: Path,
    base: Path,
    *,
    with_adapter_config: bool = True,
    dtype: str = "float16",
    model_type: str | None = None,
) -> Path:
    """Unified -mlx folder (layout d): ``model.``-prefixed base weights + adapters.

    ``adapters/<task>/adapter_model.safetensors`` holds the base repo's PEFT tensors
    with the same keys, cast to ``dtype``; ``adapter_config.json`` is copied only when
    ``with_adapter_config`` (whether Jina ships it is not known).
    The config is minimal (shapes and rope_theta only, as in nano's 378-byte file).
    """
    root, base = Path(root), Path(base)
    root.mkdir(parents=True, exist_ok=True)
    model_type = model_type or backbone_arch(base)
    state = read_safetensors(base / "model.safetensors")
    write_safetensors(
        root / "model.safetensors",
        {f"model.{k}": v for k, v in state.items()},
        metadata={"format": "mlx"},
        dtype=dtype,
    )
    write_json(root / "config.json", mlx_config(base, model_type, minimal=True))
    shutil.copyfile(base / "tokenizer.json", root / "tokenizer.json")
    write_dummies(root, ["model.py", "utils.py"])
    for task in json.loads((base / "config.json").read_text())["task_names"]:
        src, dst = base / "adapters" / task, root / "adapters" / task
        dst.mkdir(parents=True, exist_ok=True)
        tensors = read_safetensors(src / "adapter_model.safetensors")
        write_safetensors(dst / "adapter_model.safetensors", tensors, dtype=dtype)
        if with_adapter_config:
            shutil.copyfile(src / "adapter_config.json", dst / "adapter_config.json")
    return root


def with_context(base: Path, root: Path, context: int) -> Path:
    """A copy of the checkpoint ``base`` at ``root`` with ``context`` as its
    max_position_embeddings, so over-long inputs are cheap to send."""
    shutil.copytree(base, root)
    config = json.loads((root / "config.json").read_text())
    config["max_position_embeddings"] = context
    (root / "config.json").write_text(json.dumps(config))
    return root
