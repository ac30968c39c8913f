"""A standard sentence-transformers folder of one task's merged model: the backbone as
transformers' own Qwen3Model or EuroBertModel (no remote code), last-token pooling,
L2 normalization, and the task's prompts.

The weights keep transformers' key names (no "model." prefix); config.json keeps the
"mlx_jina" block too, so mlx_jina loads the same folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import mlx.core as mx
from mlx.utils import tree_flatten

from ..checkpoint.safetensors import read_json
from ..checkpoint.weights import FLOAT_FILE
from .card import model_card
from .folder_config import POOLING_DIR, QUANTIZED, portable_config, write_common_files, write_json

if TYPE_CHECKING:
    from ..encoding.embedder import Embedder

NORMALIZE_DIR = "2_Normalize"
MODULES = [
    ("", "sentence_transformers.models.Transformer"),
    (POOLING_DIR, "sentence_transformers.models.Pooling"),
    (NORMALIZE_DIR, "sentence_transformers.models.Normalize"),
]


def write_st_folder(dst: Path, folder: Path, embedder: Embedder, info: dict, name: str) -> None:
    """The folder `SentenceTransformer(dst)` loads: modules.json, the Transformer module's
    files at the top, 1_Pooling (last token), 2_Normalize, prompts and model card."""
    model = embedder.model
    if any(isinstance(m, QUANTIZED) for _, m in model.named_modules()):
        raise ValueError(
            f"{embedder.source} has quantized weights, which transformers can't read; "
            "convert to sentence-transformers from float weights."
        )
    dst.mkdir(exist_ok=True)
    weights = dict(tree_flatten(model.parameters()))
    mx.save_safetensors(str(dst / FLOAT_FILE), weights, metadata={"format": "pt"})
    dtype = str(model.norm.weight.dtype).removeprefix("mlx.core.")
    config = portable_config(read_json(folder / "config.json"), model, dtype)
    config["mlx_jina"] = info | {"weights": FLOAT_FILE}
    write_json(dst / "config.json", config)
    write_common_files(dst, folder, embedder)
    modules = [
        {"idx": i, "name": str(i), "path": path, "type": kind}
        for i, (path, kind) in enumerate(MODULES)
    ]
    write_json(dst / "modules.json", modules)
    write_json(
        dst / "sentence_bert_config.json",
        {"max_seq_length": embedder.max_length, "do_lower_case": False},
    )
    (dst / NORMALIZE_DIR).mkdir(exist_ok=True)
    write_json(dst / NORMALIZE_DIR / "config.json", {})  # an empty folder would not upload
    backbone = model.backbone.model_type
    card = model_card(info, None, name, backbone=backbone, fmt="sentence-transformers")
    (dst / "README.md").write_text(card)
