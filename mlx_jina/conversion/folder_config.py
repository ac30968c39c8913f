"""The JSON files a converted folder shares with other loaders: config.json in the form
MLX Swift's MLXEmbedders and transformers read, its quantization block, and the
sentence-transformers pooling config.

MLXEmbedders picks the model class by `model_type` ("qwen3"; it has no EuroBERT), reads
the shapes and `rope_theta` as flat keys (a missing `rope_theta` silently becomes 1e6,
a missing `head_dim` fails), and takes pooling from `1_Pooling/config.json`.
transformers 5 reads the theta from `rope_parameters`, so both are written, equal.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import mlx.nn as nn

from ..checkpoint.quantization import quantization_block
from ..checkpoint.safetensors import read_json
from ..tasks import DEFAULT_PROMPT_NAME
from .destination import SENTENCE_TRANSFORMERS_FILE, TOKENIZER_CONFIG, TOKENIZER_FILES

if TYPE_CHECKING:
    from ..encoding.embedder import Embedder

POOLING_DIR = "1_Pooling"
# transformers' class for each backbone: no remote code is needed to load either.
HF_ARCHITECTURES = {"qwen3": "Qwen3Model", "eurobert": "EuroBertModel"}
# Keys that describe where the source came from or how it was packed, not the model.
BOOKKEEPING = ("_name_or_path", "auto_map", "task_names", "quantization", "quantization_config")
QUANTIZED = (nn.QuantizedLinear, nn.QuantizedEmbedding)


def portable_config(source: dict, model: nn.Module, dtype: str) -> dict:
    """`source`'s config.json with the backbone's own model_type and architecture and
    every shape as a flat key, so MLXEmbedders, transformers and mlx_jina read the same
    model from it."""
    config = {k: v for k, v in source.items() if k not in BOOKKEEPING}
    args, backbone = model.args, model.backbone.model_type
    config["model_type"] = backbone
    config["architectures"] = [HF_ARCHITECTURES[backbone]]
    config.update(
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_hidden_layers,
        num_attention_heads=args.num_attention_heads,
        num_key_value_heads=args.num_key_value_heads,
        head_dim=args.head_dim,
        intermediate_size=args.intermediate_size,
        rms_norm_eps=args.rms_norm_eps,
        vocab_size=args.vocab_size,
        max_position_embeddings=args.max_position_embeddings,
        rope_theta=args.rope_theta,
        # The loader accepts only plain RoPE (or a scaling that changes nothing).
        rope_parameters={"rope_theta": args.rope_theta, "rope_type": "default"},
    )
    config.pop("rope_scaling", None)
    config.setdefault("tie_word_embeddings", False)  # no output head is stored
    for key in ("dtype", "torch_dtype"):  # the base config says float32 for 16-bit files
        if key in config:
            config[key] = dtype
    config.setdefault("dtype", dtype)
    return config


def quantization_config(model: nn.Module) -> dict | None:
    """mlx-lm's "quantization" block for the model's quantized layers, or None for a float
    model. Float layers need no entry: both loaders quantize only the layers whose
    `.scales` the file holds."""
    if not any(isinstance(m, QUANTIZED) for _, m in model.named_modules()):
        return None
    return quantization_block(model)


def pooling_config(dim: int) -> dict:
    """sentence-transformers' 1_Pooling/config.json for last-token pooling (its legacy
    keys, which MLXEmbedders and every sentence-transformers version read)."""
    return {
        "word_embedding_dimension": dim,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": False,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": True,
        "include_prompt": True,
    }


def write_common_files(dst: Path, folder: Path, embedder: Embedder) -> None:
    """The tokenizer files (a tokenizer_config.json made if the source has none: Swift's
    and transformers' tokenizer loaders need one), the prompts and the last-token
    pooling config."""
    for copied in TOKENIZER_FILES:
        if (folder / copied).exists():
            shutil.copyfile(folder / copied, dst / copied)
    write_json(dst / SENTENCE_TRANSFORMERS_FILE, prompt_config(folder, embedder))
    if not (folder / TOKENIZER_CONFIG).exists():
        config = read_json(folder / "config.json")
        write_json(dst / TOKENIZER_CONFIG, tokenizer_config(embedder, config))
    (dst / POOLING_DIR).mkdir(exist_ok=True)
    write_json(dst / POOLING_DIR / "config.json", pooling_config(embedder.dim))


def prompt_config(folder: Path, embedder: Embedder) -> dict:
    """The source's config_sentence_transformers.json with this task's own prompts (the
    symmetric tasks put "Document: " before queries too), which apps read from it."""
    path = folder / SENTENCE_TRANSFORMERS_FILE
    config = read_json(path) if path.exists() else {}
    config.update(
        prompts=embedder.prompts,
        default_prompt_name=DEFAULT_PROMPT_NAME,
        similarity_fn_name="cosine",
    )
    return config


def tokenizer_config(embedder: Embedder, config: dict) -> dict:
    """A tokenizer_config.json that loads tokenizer.json as it is (no rebuilt pre- or
    post-processing), right-padded. The pad token is config.json's (else its EOS, else
    the first special token): with right padding and a mask its value never matters,
    but transformers refuses to pad without one."""
    names = {"tokenizer_class": "PreTrainedTokenizerFast", "padding_side": "right"}
    names["model_max_length"] = embedder.max_length
    tokenizer = embedder.tokenizer
    for key, token_id in (
        ("bos_token", config.get("bos_token_id")),
        ("eos_token", config.get("eos_token_id")),
        ("pad_token", config.get("pad_token_id", config.get("eos_token_id"))),
    ):
        if isinstance(token_id, list):
            token_id = token_id[0] if token_id else None
        token = tokenizer.id_to_token(token_id) if isinstance(token_id, int) else None
        if token is not None:
            names[key] = token
    specials = sorted((i, t.content) for i, t in tokenizer.get_added_tokens_decoder().items() if t.special)
    if "pad_token" not in names and specials:
        names["pad_token"] = specials[0][1]
    return names


def write_json(path: Path, data: dict | list) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
