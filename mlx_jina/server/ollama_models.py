"""What Ollama's listings say about a served model: GET /api/tags, GET /api/ps, POST /api/show.

A loaded model is described from itself: its backbone, parameters, quantization, context,
weight bytes and content identity (`model.identity`, the `digest`). An unloaded model in
a local folder is described from its files (config.json and the weight headers, as
`mlx-jina info` reads them, without loading). Its digest is empty: the identity hashes
the load settings (task, bits, dtype) along with the files, so only a load can tell it,
and a digest that changed at load would look like a new model to a client that compares.
A model named by a Hub id and not loaded yet is listed with what its name says only:
describing it would mean downloading it.
"""

from __future__ import annotations

import functools
import math
import os
import re
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

from ..checkpoint.hub import expand
from .ollama_protocol import QUERY_TAG, details, expires_at, rfc3339
from .registry import Slot

STARTED = time.time()  # modified_at of a model with no local folder
FLOAT_LEVELS = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}
CAPABILITIES = ["embedding"]


@dataclass(frozen=True)
class Facts:
    family: str = ""  # the backbone: qwen3, eurobert
    parameters: int = 0
    quantization: str = ""  # F32, F16, BF16, Q4, Q8, ...
    dim: int = 0
    context: int = 0
    layers: int = 0
    size: int = 0  # bytes of weights
    digest: str = ""  # the content identity, once loaded


_loaded: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # service -> Facts


def facts(slot: Slot) -> Facts:
    """What is known of `slot`'s model without loading it."""
    service = slot.service
    if service is not None and service.model is not None:
        if service not in _loaded:
            _loaded[service] = loaded_facts(service.model, slot.size)
        return _loaded[service]
    folder = expand(slot.spec.source)
    return folder_facts(str(folder)) if folder.is_dir() else Facts()


def loaded_facts(model, size: int) -> Facts:
    """A loaded Embedder's facts; quantized weights count the values they pack."""
    parameters, bits = 0, set()
    for _, module in model.model.named_modules():
        own = {k: v for k, v in module.items() if hasattr(v, "size") and hasattr(v, "dtype")}
        if getattr(module, "bits", None) and "weight" in own:
            bits.add(module.bits)
            weight = own.pop("weight")
            parameters += weight.size * 32 // module.bits
            own.pop("scales", None), own.pop("biases", None)
        parameters += sum(v.size for v in own.values())
    dtype = str(model.model.norm.weight.dtype).rsplit(".", 1)[-1]
    level = "/".join(f"Q{b}" for b in sorted(bits)) or FLOAT_LEVELS.get(dtype, dtype.upper())
    args = model.model.args
    return Facts(
        model.model.backbone.model_type, parameters, level, model.dim, model.max_length,
        args.num_hidden_layers, size, model.identity or "",
    )  # fmt: skip


@functools.lru_cache(maxsize=64)
def folder_facts(folder: str) -> Facts:
    """A local model folder's facts, from its JSON files and weight headers."""
    from ..checkpoint.facts import model_facts

    try:
        found = model_facts(folder)
        bits = re.search(r"(\d+)-bit", found["quantization"])
        parameters = header_parameters(Path(folder), int(bits[1]) if bits else None)
    except (ValueError, OSError):  # a folder that can't load says so when it is asked for
        return Facts()
    floats = "/".join(d for d in found["dtypes"] if d != "U32")  # F32, F16, BF16
    level = f"Q{bits[1]}" if bits else floats
    return Facts(
        found["backbone"], parameters, level, found["dim"], found["context"],
        found["layers"], found["memory_bytes"],
    )  # fmt: skip


def header_parameters(folder: Path, bits: int | None) -> int:
    """The parameters the weight files hold (packed quantized values unpacked), as a
    loaded model counts them: no lm_head, no quantization scales and biases."""
    from ..checkpoint.folder import inspect_folder
    from ..checkpoint.weights import read_headers

    tensors = read_headers(folder, inspect_folder(folder).weight_files)
    count = 0
    for name, tensor in tensors.items():
        if name.startswith("lm_head.") or name.endswith((".scales", ".biases")):
            continue
        size = math.prod(tensor.shape)
        count += size * 32 // bits if tensor.dtype == "U32" and bits else size
    return count


def modified_at(slot: Slot) -> float:
    """When the model's files last changed, or (no local folder) when this server started."""
    folder = expand(slot.spec.source)
    try:
        return os.stat(folder / "config.json").st_mtime
    except OSError:
        return STARTED


def listed_names(slot: Slot) -> list[str]:
    """`<name>:latest`, and `<name>:query` where queries get a prompt of their own (not
    known until loaded: then listed, as /v1/models does)."""
    service = slot.service
    query = service is None or service.model is None or service.distinct_query_prompt()
    return [f"{slot.spec.name}:latest"] + ([f"{slot.spec.name}:{QUERY_TAG}"] if query else [])


def tags_entries(slot: Slot) -> list[dict]:
    """The model's entries in GET /api/tags, one per tag, as Ollama lists each tag."""
    known = facts(slot)
    shared = {
        "modified_at": rfc3339(modified_at(slot)),
        "size": known.size,
        "digest": known.digest,
        "details": details(known.family, known.parameters, known.quantization),
        "capabilities": CAPABILITIES,
    }
    return [{"name": name, "model": name, **shared} for name in listed_names(slot)]


def ps_entry(slot: Slot, gpu: bool) -> dict:
    """A loaded model in GET /api/ps; on a GPU, MLX's memory is the GPU's (unified)."""
    known = facts(slot)
    name = f"{slot.spec.name}:latest"
    return {
        "name": name,
        "model": name,
        "size": known.size,
        "digest": known.digest,
        "details": details(known.family, known.parameters, known.quantization),
        "expires_at": expires_at(slot.expires_at, slot.keep_alive),
        "size_vram": known.size if gpu else 0,
        "context_length": known.context,
    }


def show_body(slot: Slot) -> dict:
    """POST /api/show: details, model_info (GGUF-style keys) and capabilities."""
    known = facts(slot)
    arch = known.family or "unknown"
    info: dict = {"general.architecture": arch, "general.basename": slot.spec.name}
    if known.parameters:
        info["general.parameter_count"] = known.parameters
    if known.dim:
        info |= {
            f"{arch}.embedding_length": known.dim,
            f"{arch}.context_length": known.context,
            f"{arch}.block_count": known.layers,
        }
    return {
        "details": details(known.family, known.parameters, known.quantization),
        "model_info": info,
        "capabilities": CAPABILITIES,
        "modified_at": rfc3339(modified_at(slot)),
    }
