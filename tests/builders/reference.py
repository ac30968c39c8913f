"""The independent reference: torch + transformers + peft, float32, upstream-style.

It reads any of our layouts' weights (base with adapters/, merged, ``model.``-prefixed
-mlx files), merges adapters with peft's merge_and_unload and pools like Jina's remote
code. torch, transformers and peft are imported on first use, so a test module may
import this one without them; a test that calls it carries the ``reference`` marker.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from typing import TYPE_CHECKING, Any

import numpy as np
from tokenizers import Tokenizer

from builders.configs import backbone_arch
from builders.files import read_safetensors
from builders.weights import check_backbone_keys

if TYPE_CHECKING:
    import torch

_NOT_BACKBONE_KEYS = (  # Jina's and the converters' additions to the backbone config
    "model_type",
    "architectures",
    "auto_map",
    "task_names",
    "quantization",
    "quantization_config",
    "transformers_version",
    "dtype",
    "torch_dtype",
)
_MODELS: dict[tuple[str, str | None], Any] = {}
_TOKENIZERS: dict[str, Tokenizer] = {}  # by sha1 of the file
_TOKENIZER_HASHES: dict[tuple[str, int, int], str] = {}


def _torch() -> Any:
    """torch, set to one thread: the fixtures' tensors are tiny, and a thread pool only
    adds wake-up latency (the checkpoint tests ran 2-4x slower with 2 threads)."""
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    return torch


def _classes(arch: str) -> tuple[Any, Any]:
    """transformers' (config class, backbone class) of ``arch``."""
    from transformers import EuroBertConfig, EuroBertModel, Qwen3Config, Qwen3Model

    return {
        "qwen3": (Qwen3Config, Qwen3Model),
        "eurobert": (EuroBertConfig, EuroBertModel),
    }[arch]


def load_backbone(folder: Path, *, arch: str | None = None) -> torch.nn.Module:
    """Load a float32 Qwen3Model / EuroBertModel from any of our layouts' weights.

    The config class is chosen from the weights, since ``model_type`` was edited to
    "jina_embeddings_v5". One leading ``model.`` is stripped and ``lm_head.*``
    dropped; the state dict then loads with strict=True.
    """
    folder = Path(folder)
    arch = arch or backbone_arch(folder)
    data = json.loads((folder / "config.json").read_text())
    for key in _NOT_BACKBONE_KEYS:
        data.pop(key, None)
    # pad_token_id only sets nn.Embedding's padding_idx; the forward is unchanged
    data["pad_token_id"] = None
    if "rope_theta" not in data and "rope_theta" not in (
        data.get("rope_parameters") or {}
    ):
        raise ValueError(f"{folder}/config.json has no rope_theta")
    torch = _torch()
    config_class, model_class = _classes(arch)
    config = config_class(**data)
    config._attn_implementation = "eager"
    state = {}
    for key, array in read_safetensors(folder / "model.safetensors").items():
        key = key.removeprefix("model.")
        if not key.startswith("lm_head."):
            state[key] = torch.from_numpy(array.astype(np.float32))
    model = model_class(config).eval()
    model.load_state_dict(state, strict=True)
    return model


def merged_state_dict(base: Path, task: str) -> dict[str, torch.Tensor]:
    """float32 base + adapters/<task>, merged by peft's merge_and_unload.

    Keys are un-prefixed, like the base file's. The builders merge in numpy; this is
    the independent merge they are checked against.
    """
    from peft import PeftModel

    base = Path(base)
    model = load_backbone(base)
    merged = PeftModel.from_pretrained(
        model, str(base / "adapters" / task)
    ).merge_and_unload()
    state = {k: v.detach().clone() for k, v in merged.state_dict().items()}
    check_backbone_keys(state, backbone_arch(base), merged.config.num_hidden_layers)
    return state


def _reference_model(folder: Path, task: str | None) -> torch.nn.Module:
    key = (str(Path(folder).resolve()), task)
    if key not in _MODELS:
        model = load_backbone(folder)
        if task is not None:
            from peft import PeftModel

            adapter = Path(folder) / "adapters" / task
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        _MODELS[key] = model.eval()
    return _MODELS[key]


def _tokenizer(path: Path) -> Tokenizer:
    """The parsed tokenizer.json, cached by content.

    Every layout folder has its own copy of the same 11 MB file, and parsing the real
    ones takes about half a second each.
    """
    stat = Path(path).stat()
    file_key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if file_key not in _TOKENIZER_HASHES:
        data = Path(path).read_bytes()
        digest = hashlib.sha1(data).hexdigest()
        if digest not in _TOKENIZERS:
            _TOKENIZERS[digest] = Tokenizer.from_str(data.decode("utf-8"))
        _TOKENIZER_HASHES[file_key] = digest
    return _TOKENIZERS[_TOKENIZER_HASHES[file_key]]


def reference_token_ids(
    tokenizer: Path,
    texts: list[str],
    *,
    prompt: str = "",
    max_length: int | None = None,
) -> list[list[int]]:
    """Token ids of prompt + text, with the file's own post-processor.

    add_special_tokens=True; ``max_length`` truncates with ``enable_truncation``.
    """
    tok = _tokenizer(tokenizer)
    tok.no_padding()
    if max_length is None:
        tok.no_truncation()
    else:  # keeps room for the specials the post-processor adds (as transformers does)
        tok.enable_truncation(max_length=max_length)
    try:
        encodings = tok.encode_batch(
            [prompt + t for t in texts], add_special_tokens=True
        )
    finally:
        tok.no_truncation()
    return [e.ids for e in encodings]


def reference_embeddings(
    folder: Path,
    texts: list[str],
    *,
    task: str | None,
    prompt: str,
    tokenizer: Path | None = None,
    max_length: int | None = None,
    truncate_dim: int | None = None,
) -> np.ndarray:
    """Upstream-style embeddings, float32 numpy of shape (len(texts), dim).

    ``folder`` is a base repo (then ``task`` picks adapters/<task>, merged by peft) or
    any folder holding merged weights (``task=None``; "model."-prefixed keys work too).
    Prompt is plain text before each input; right padding; the mask comes from the
    token counts; pool at sum(mask) - 1; cut to ``truncate_dim``; L2-normalize.
    """
    folder = Path(folder)
    model = _reference_model(folder, task)
    ids = reference_token_ids(
        tokenizer or folder / "tokenizer.json",
        texts,
        prompt=prompt,
        max_length=max_length,
    )
    torch = _torch()
    lengths = torch.tensor([len(x) for x in ids])
    assert int(lengths.min()) > 0, "empty input after tokenization"
    vocab = model.config.vocab_size
    assert max(max(x) for x in ids) < vocab, "token id outside the embedding table"
    input_ids = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long)  # pad id 0
    for row, x in enumerate(ids):
        input_ids[row, : len(x)] = torch.tensor(x)
    mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()
    with torch.no_grad():
        hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
    pooled = hidden[torch.arange(len(ids)), lengths - 1].float()
    if truncate_dim is not None:
        pooled = pooled[:, :truncate_dim]
    pooled = pooled / pooled.norm(dim=-1, keepdim=True)
    return pooled.numpy().astype(np.float32)
