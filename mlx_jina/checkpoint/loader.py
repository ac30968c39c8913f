"""`load()`: a folder or repo id to an Embedder, checking everything before building.

The pipeline: resolve the source (hub.py), read what the folder holds and its small
files (folder.py), check config.json against the weight headers and the adapters
(nothing built yet), read the tensors, merge or attach the adapters, quantize if asked.
"""

import re
import warnings
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn

from ..encoding.embedder import Embedder
from ..models import Backbone, detect_backbone
from ..models.base import ModelArgs, sanitize
from ..models.decoder import Model, weight_shapes
from ..models.lora import add_adapters
from ..tasks import MIN_DIM, TASK_NAMES, parse_task
from ..thread_streams import release_at_thread_exit
from . import WEIGHT_DTYPES, hub, list_problems
from .adapters import check_adapter, merge, read_adapter
from .folder import (
    ModelFolder,
    choose_tasks,
    inspect_folder,
    read_prompts,
    read_tokenizer,
)
from .identity import identity_of, identity_parts
from .quantization import (
    check_settings,
    infer_quantization,
    quantize_like,
    quantize_model,
    warn_slow_activations,
)
from .safetensors import FLOATS, TensorInfo
from .weights import load_weights, quantized_file, read_headers

DTYPES = dict(zip(WEIGHT_DTYPES, (mx.float16, mx.bfloat16, mx.float32), strict=True))
LAYER = re.compile(r"layers\.(\d+)\.")


def load(
    path_or_repo: str | Path,
    *,
    task: str | None = None,
    bits: int | None = None,
    group_size: int = 64,
    dtype: str | None = None,
    revision: str | None = None,
    multitask: bool = False,
    truncate_dim: int | None = None,
) -> Embedder:
    """Load a jina-embeddings-v5-text model for encoding.

    Args:
        path_or_repo: A local folder or a Hugging Face repo id, in any published layout:
            the base repo with LoRA adapters, a merged per-task repo, or a -mlx repo.
        task: One of `mlx_jina.TASKS` (its adapter is merged at load time), or a Jina API
            task name, which also sets the default prompt. Needed when the source has
            several adapters. With `multitask=True`, the default for `encode(task=...)`.
        bits: 4 or 8 for quantized weights: `model-{bits}bit.safetensors` when the folder
            has it, else the float weights are quantized at load (after merging the
            adapter). None uses what the folder holds, quantized or not.
        group_size: Affine quantization group size when quantizing at load (32, 64, 128).
            Stored quantized files carry their own, read from the tensor shapes.
        dtype: `float16`, `bfloat16` or `float32`; None keeps the stored dtype.
        revision: A Hub branch, tag or commit to pin (Hub repos only).
        multitask: Keep all task adapters unmerged; pick one per call (`encode(task=)`).
        truncate_dim: Every encode call's default Matryoshka size (32 to the model's size).

    Returns an `Embedder` (`encode`, `encode_query`, `encode_document`, ...).

    Raises:
        ValueError: A bad setting, path or repo id, or files that disagree: config.json
            against the weight headers (names, shapes, dtypes), adapters, tokenizer.json.
            All of it is checked before any tensor data is read or any layer built.
        FileNotFoundError: No such folder, config.json, tokenizer.json or weight file.
    """
    check_load_settings(task, bits, group_size, dtype, truncate_dim)
    task, prompt_name = parse_task(task) if task is not None else (None, None)
    folder = hub.resolve(path_or_repo, revision=revision, task=task, bits=bits, all_tasks=multitask)
    found = inspect_folder(folder, name=str(path_or_repo), bits=bits)
    check_truncate_dim(truncate_dim, found.config.get("hidden_size"))
    # Small files first: a bad tokenizer or prompt file shouldn't cost a full load.
    tokenizer = read_tokenizer(folder)
    prompts, default_prompt_name = read_prompts(folder)
    task, tasks = choose_tasks(found, task, multitask)
    model = read_model(found, tasks, multitask, bits, group_size, dtype)
    settings = load_settings(model, tasks, multitask)
    # The default task and the prompts decide what encode() computes too (the task of a
    # merged folder may come from its name or its converter's block).
    default_prompt = prompt_name or default_prompt_name
    settings |= {"task": task, "prompts": prompts, "default_prompt_name": default_prompt}
    parts = identity_parts(
        found.path, found.weight_files, {t: found.adapters[t] for t in tasks}, settings
    )
    return Embedder(
        model,
        tokenizer,
        task=task,
        tasks=found.tasks,
        multitask=multitask,
        revision=found.revision or revision,
        prompts=prompts,
        default_prompt_name=default_prompt,
        max_length=model.args.max_position_embeddings,
        source=found.name,
        truncate_dim=truncate_dim,
        identity=identity_of(parts),
        identity_parts=parts,
    )


def load_settings(model: Model, tasks: list[str], multitask: bool) -> dict:
    """What a load adds to the files' content: the adapters used and how, the dtype it
    runs in, and its quantized layers (bits, group size), stored or quantized at load."""
    kinds = (nn.QuantizedLinear, nn.QuantizedEmbedding)
    quantized = {(m.bits, m.group_size) for _, m in model.named_modules() if isinstance(m, kinds)}
    return {
        "tasks": list(tasks),
        "multitask": multitask,
        "dtype": str(model.norm.weight.dtype),
        "quantized": sorted(quantized),
    }


def check_load_settings(
    task: str | None, bits: int | None, group_size: int, dtype, truncate_dim: int | None = None
) -> None:
    if dtype is not None and (not isinstance(dtype, str) or dtype not in DTYPES):
        raise ValueError(f"dtype={dtype!r}; choose one of {', '.join(DTYPES)} or None.")
    if bits is not None:
        check_settings(bits, group_size)
    if task is not None and (not isinstance(task, str) or task not in TASK_NAMES):
        raise ValueError(f"Unknown task {task!r}. Available tasks: {', '.join(TASK_NAMES)}.")
    check_truncate_dim(truncate_dim, None)  # before any file is read


def check_truncate_dim(truncate_dim: int | None, dim: int | None) -> None:
    """`load(truncate_dim=)`: an int from MIN_DIM to the model's size (once config.json
    says it; a bad config is reported by the checks after this one)."""
    top = dim if isinstance(dim, int) and dim >= MIN_DIM else None
    if truncate_dim is not None and (
        isinstance(truncate_dim, bool)
        or not isinstance(truncate_dim, int)
        or not MIN_DIM <= truncate_dim <= (top or truncate_dim)
    ):
        size = f"the embedding size {top}" if top else "the model's embedding size"
        raise ValueError(
            f"truncate_dim={truncate_dim!r}; use an integer from {MIN_DIM} to {size}, or None."
        )


def read_model(
    found: ModelFolder,
    tasks: list[str],
    multitask: bool,
    bits: int | None,
    group_size: int,
    dtype: str | None,
) -> Model:
    """Check the headers, read the tensors, merge or attach the adapters, quantize."""
    if bits is not None and not found.weight_files:
        have = sorted(p.name for p in found.path.glob("model-*bit.safetensors"))
        raise FileNotFoundError(
            f"No {quantized_file(bits)} and no float weights to quantize in {found.path} "
            f"(it has {', '.join(have) or 'no model*.safetensors'}). Load with bits=None."
        )
    where = ", ".join(str(found.path / f) for f in found.weight_files)
    # Headers only: config.json and every tensor's dtype and shape agree before any
    # data is read or any layer built.
    tensors = sanitize(read_headers(found.path, found.weight_files))
    backbone, args, stored = check_checkpoint(found.config, tensors, where)
    adapters = [read_adapter(found.adapters[t], t) for t in tasks]
    shapes = weight_shapes(args, backbone)
    for adapter in adapters:  # the float shapes, whether merged or not, quantized or not
        check_adapter(shapes, adapter)
    # Lazy arrays: nothing is read from the files until evaluated (on this thread's
    # streams, which it then frees as it ends).
    release_at_thread_exit()
    weights = sanitize(load_weights(found.path, found.weight_files))
    merged = bool(adapters) and not (multitask or stored)
    if merged:
        # Cast first: a float32 load of 16-bit files then merges without rounding.
        weights = merge(cast_floats(weights, dtype), adapters[0])
    # From float weights with `bits`, each block is read, merged, quantized and evaluated
    # in turn (quantize_at_load), so the float model is never in memory as a whole.
    layerwise = bits is not None and not stored
    model = build_model(backbone, args, stored, weights, dtype, evaluate=not layerwise)
    del weights  # the model holds the only references now
    if bits is not None:
        quantize_at_load(model, bits, group_size, bool(stored), where)
    warn_slow_activations(model, bits is not None or bool(stored))
    if adapters and not merged:
        # Unmerged LoRA: the base stays as loaded (possibly quantized), adapters float.
        add_adapters(model, adapters)
    return model


def check_checkpoint(
    config: dict, tensors: dict[str, TensorInfo], where: str
) -> tuple[Backbone, ModelArgs, dict[str, tuple[int, int]]]:
    """Check config.json against the weight files' headers, before anything is built.

    Returns the backbone, its args and the quantized layers. Every problem ends in one
    ValueError that lists a few and counts the rest.
    """
    backbone = detect_backbone(config, set(tensors))
    args = ModelArgs.from_dict(config, {k: t.shape for k, t in tensors.items()}, backbone.context)
    problem = (
        f"The weights don't fit a {backbone.model_type} model built from config.json ({where}):"
    )
    # Count first: a config claiming 100,000 layers must not cost 100,000 of anything.
    layers = {m.group(1) for k in tensors if (m := LAYER.match(k))}
    if len(layers) != args.num_hidden_layers:
        raise ValueError(
            f"{problem} config.json says num_hidden_layers={args.num_hidden_layers}, the "
            f"weights hold {len(layers)} layers."
        )
    shapes = weight_shapes(args, backbone)
    quantized, problems = infer_quantization(shapes, tensors, config, where)
    # Layers with scales were judged above, right or wrong.
    packed = {k.removesuffix(".scales") for k in tensors if k.endswith(".scales")}
    for key, shape in shapes.items():
        t = tensors.get(key)
        if t is None:
            problems.append(f"{key} is missing")
        elif key.removesuffix(".weight") in packed:
            continue
        elif t.dtype not in FLOATS:
            problems.append(f"{key} is {t.dtype}; float weights must be F16, BF16 or F32")
        elif t.shape != shape:
            problems.append(f"{key} has shape {t.shape}; config.json implies {shape}")
    judged = {f"{p}.{s}" for p in packed for s in ("scales", "biases")}
    problems += [f"unexpected tensor {k}" for k in sorted(set(tensors) - set(shapes) - judged)]
    if problems:
        raise ValueError(problem + list_problems(problems))
    return backbone, args, quantized


def cast_floats(weights: dict[str, mx.array], dtype: str | None) -> dict[str, mx.array]:
    """Cast floating-point arrays to `dtype` (None: unchanged); packed integers stay."""
    if dtype is None:
        return weights
    target = DTYPES[dtype]
    return {
        k: v.astype(target) if mx.issubdtype(v.dtype, mx.floating) else v
        for k, v in weights.items()
    }


def build_model(
    backbone: Backbone,
    args: ModelArgs,
    quantized: dict[str, tuple[int, int]],
    weights: dict[str, mx.array],
    dtype: str | None,
    *,
    evaluate: bool = True,
) -> Model:
    """The model, from weights that `check_checkpoint` accepted.

    `evaluate=False` leaves the weights lazy: read from the files when first evaluated."""
    model = Model(args, backbone)
    # Quantize exactly the layers the checkpoint stores quantized (`<path>.scales`).
    quantize_like(model, quantized)
    if dtype is not None:
        weights = cast_floats(weights, dtype)
    else:
        # The stored float dtype; quantized layers' packed words are uint32.
        floats = [v.dtype for v in weights.values() if mx.issubdtype(v.dtype, mx.floating)]
        model.set_dtype(floats[0] if floats else mx.float32)
    model.load_weights(list(weights.items()), strict=True)
    if evaluate:
        mx.eval(model.parameters())
    return model


def quantize_at_load(model: Model, bits: int, group_size: int, stored: bool, where: str) -> None:
    """`bits` for a float model; a stored quantized one must already have them."""
    if stored:
        kinds = (nn.QuantizedLinear, nn.QuantizedEmbedding)
        found = {m.bits for _, m in model.named_modules() if isinstance(m, kinds)}
        if found != {bits}:
            raise ValueError(
                f"{where} holds {'/'.join(map(str, sorted(found)))}-bit weights, not {bits}-bit. "
                "Load with bits=None, or from float weights to quantize at load."
            )
        return
    # A merged adapter is quantized with the base; unmerged ones stay float.
    if skipped := quantize_model(model, bits, group_size, layerwise=True):
        warnings.warn(
            f"{len(skipped)} layers stay float: their input size is not a multiple of "
            f"group_size={group_size} (e.g. {skipped[0]}).",
            stacklevel=4,  # the caller of load()
        )
