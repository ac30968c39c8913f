"""What a model folder or repo holds, from its JSON files and weight headers alone: the
facts `mlx-jina info` prints. The checkpoint is checked as `load` checks it."""

from ..models.base import sanitize
from ..tasks import matryoshka_dims
from . import hub
from .adapters import ADAPTER_WEIGHTS
from .folder import inspect_folder
from .loader import check_checkpoint
from .safetensors import TensorInfo
from .weights import read_headers, weight_header


def tensor_bytes(tensors: dict[str, TensorInfo]) -> int:
    return sum(t.nbytes for t in tensors.values())


def model_facts(source: str, revision: str | None = None) -> dict:
    """Layout, backbone, tasks, sizes, dtypes, quantization, files and weight memory."""
    folder = hub.resolve(source, revision=revision, all_tasks=True)
    found = inspect_folder(folder, name=source)
    config = found.config
    tensors = read_headers(folder, found.weight_files)
    where = ", ".join(str(folder / f) for f in found.weight_files)
    backbone, args, _ = check_checkpoint(config, sanitize(tensors), where)
    adapters = [
        path / ADAPTER_WEIGHTS for path in found.adapters.values() if (path / ADAPTER_WEIGHTS).exists()
    ]
    weights = tensor_bytes({k: v for k, v in tensors.items() if not k.startswith("lm_head.")})
    return {
        "source": source,
        "folder": str(folder),
        "layout": found.layout,
        "backbone": backbone.model_type,
        "attention": backbone.attention,
        "tasks": list(found.tasks),
        "dim": args.hidden_size,
        "matryoshka_dims": matryoshka_dims(args.hidden_size),
        "context": args.max_position_embeddings,
        "layers": args.num_hidden_layers,
        "dtypes": sorted({t.dtype for t in tensors.values()}),
        "quantization": describe_quantization(config, tensors),
        "files": {
            **{name: (folder / name).stat().st_size for name in found.weight_files},
            **{str(p.relative_to(folder)): p.stat().st_size for p in adapters},
        },
        # One task's adapter is merged into the weights; --multitask keeps all unmerged.
        "memory_bytes": weights,
        "multitask_memory_bytes": weights + sum(tensor_bytes(weight_header(p)) for p in adapters),
    }


def describe_quantization(config: dict, tensors: dict[str, TensorInfo]) -> str:
    block = config.get("quantization") or config.get("quantization_config")
    if block:
        mode = block.get("mode", "affine")
        mixed = " (mixed: some layers differ)" if any(isinstance(v, dict) for v in block.values()) else ""
        return f"{mode} {block.get('bits')}-bit, group size {block.get('group_size')}{mixed}"
    if any(k.endswith(".scales") for k in tensors):
        return "quantized (no quantization block in config.json)"
    return "none"
