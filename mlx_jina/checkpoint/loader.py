"""The model half of `load()` (mlx_jina/loading.py): a checked folder to a built Model.

`read_model` checks config.json against the weight headers and the adapters (nothing
built yet), reads the tensors, merges or attaches the adapters and quantizes if asked;
`check_load_settings` refuses bad arguments before any file is read.
"""

import re
import warnings

import mlx.core as mx

from ..models import Backbone, detect_backbone
from ..models.base import ModelArgs, sanitize
from ..models.decoder import Model, weight_shapes
from ..tasks import MIN_DIM, TASK_NAMES
from ..thread_streams import release_at_thread_exit
from . import WEIGHT_DTYPES, list_problems
from .adapters import add_adapters, check_adapter, merge, read_adapter
from .folder import ModelFolder
from .quantization import (
    Quantization,
    infer_quantization,
    quantize_like,
    quantize_model,
    quantized_layers,
    resolve_quantization,
    warn_slow_activations,
)
from .safetensors import FLOATS, TensorInfo
from .weights import load_weights, quantized_file, read_headers

DTYPES = dict(zip(WEIGHT_DTYPES, (mx.float16, mx.bfloat16, mx.float32), strict=True))
LAYER = re.compile(r"layers\.(\d+)\.")


def load_settings(model: Model, tasks: list[str], multitask: bool) -> dict:
    """What a load adds to the files' content: the adapters used and how, the dtype it
    runs in, and its quantized layers (bits, group size, and the mode unless affine),
    stored or quantized at load."""
    quantized = {
        (b, g) if m == "affine" else (b, g, m) for b, g, m in quantized_layers(model).values()
    }
    return {
        "tasks": list(tasks),
        "multitask": multitask,
        "dtype": str(model.norm.weight.dtype),
        "quantized": sorted(quantized),
    }


def check_load_settings(
    task: str | None,
    bits: int | None,
    group_size: int | None,
    dtype,
    truncate_dim: int | None = None,
    mode: str | None = None,
    recipe: str | None = None,
) -> Quantization | None:
    """Refuse bad arguments; return the quantization they ask for (None: as stored)."""
    if dtype is not None and (not isinstance(dtype, str) or dtype not in DTYPES):
        raise ValueError(f"dtype={dtype!r}; choose one of {', '.join(DTYPES)} or None.")
    if bits is None and mode is None and recipe is None and group_size is not None:
        raise ValueError(
            f"group_size={group_size!r} without bits, mode or recipe quantizes nothing; "
            "pass bits= (or mode=) too, or drop group_size."
        )
    quant = resolve_quantization(bits, group_size, mode, recipe)
    if task is not None and (not isinstance(task, str) or task not in TASK_NAMES):
        raise ValueError(f"Unknown task {task!r}. Available tasks: {', '.join(TASK_NAMES)}.")
    check_truncate_dim(truncate_dim, None)  # before any file is read
    return quant


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
    quant: Quantization | None,
    dtype: str | None,
) -> Model:
    """Check the headers, read the tensors, merge or attach the adapters, quantize."""
    if quant is not None and not found.weight_files:
        have = sorted(p.name for p in found.path.glob("model-*bit.safetensors"))
        raise FileNotFoundError(
            f"No {quantized_file(quant.bits)} and no float weights to quantize in {found.path} "
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
    layerwise = quant is not None and not stored
    model = build_model(backbone, args, stored, weights, dtype, evaluate=not layerwise)
    del weights  # the model holds the only references now
    if quant is not None:
        quantize_at_load(model, quant, bool(stored), where)
    warn_slow_activations(model, quant is not None or bool(stored))
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


def quantize_at_load(model: Model, quant: Quantization, stored: bool, where: str) -> None:
    """Quantize a float model as `quant` says; a stored quantized one must already be."""
    if stored:
        have = quantized_layers(model)
        want = {p: tuple(quant.layer(p, len(model.layers)).values()) for p in have}
        # Compare bits and mode: the group size of stored files is theirs to choose.
        if {(b, m) for b, _, m in have.values()} != {(b, m) for _, b, m in want.values()}:
            found = sorted({f"{m} {b}-bit" for b, _, m in have.values()})
            wanted = sorted({f"{m} {b}-bit" for _, b, m in want.values()})
            raise ValueError(
                f"{where} holds {' and '.join(found)} weights, not {' and '.join(wanted)}. "
                "Load with bits=None, or from float weights to quantize at load."
            )
        return
    # A merged adapter is quantized with the base; unmerged ones stay float.
    if skipped := quantize_model(model, quant, layerwise=True):
        warnings.warn(
            f"{len(skipped)} layers stay float: their input size is not a multiple of "
            f"group_size={quant.group_size} (e.g. {skipped[0]}).",
            stacklevel=4,  # the caller of load()
        )
