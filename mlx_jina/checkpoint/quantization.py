"""MLX affine quantization: quantize a model, or rebuild the layers a checkpoint quantized.

A quantized layer stores `weight` as uint32 words `[out, in * bits / 32]` plus `scales`
and `biases` `[out, in / group_size]` (docs/model-facts.md), so a checkpoint's shapes give
its bits and group size even when config.json has no "quantization" block.
"""

import re
import warnings

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from .safetensors import FLOATS, TensorInfo

BITS = (4, 8)
GROUP_SIZES = (32, 64, 128)
# What MLX's affine mode can store; files from other tools may use any of these.
STORED_BITS = (2, 3, 4, 5, 6, 8)


def check_settings(bits: int, group_size: int, hidden_size: int | None = None) -> None:
    """Refuse bits and group sizes we don't write, before any work is done."""
    if type(bits) is not int or bits not in BITS:
        raise ValueError(f"bits={bits!r}; choose 4 or 8 (or None for float weights).")
    if type(group_size) is not int or group_size not in GROUP_SIZES:
        raise ValueError(
            f"group_size={group_size!r}; MLX affine quantization takes "
            f"{', '.join(map(str, GROUP_SIZES))} (64 is the default and what Jina used)."
        )
    if hidden_size is not None and hidden_size % group_size:
        raise ValueError(
            f"group_size={group_size} does not divide the hidden size {hidden_size}, so the "
            "embedding and most layers could not be quantized. Pick a group size that divides it."
        )


def quantize_model(
    model: nn.Module, bits: int, group_size: int = 64, *, layerwise: bool = False
) -> list[str]:
    """Quantize every Linear layer and the token embedding in place.

    Returns the paths of layers left in float because their input size is not a multiple
    of `group_size` (MLX quantizes whole groups along the input dimension).

    `layerwise=True` (loading from float weights that are still lazy): quantize and
    evaluate one block at a time (the embedding, each transformer layer, the rest), so
    only one block's float weights are ever in memory next to the quantized model. The
    arrays are the same as `nn.quantize` on the whole model gives: the same calls on the
    same weights, only evaluated earlier. The caller must hold no other reference to the
    float weights, or they stay in memory once read.
    """
    check_settings(bits, group_size, model.args.hidden_size)
    skipped = []

    def predicate(path: str, module: nn.Module) -> bool:
        if not hasattr(module, "to_quantized"):
            return False
        if module.weight.shape[-1] % group_size:
            skipped.append(path)
            return False
        return True

    if not layerwise:
        nn.quantize(model, group_size, bits, mode="affine", class_predicate=predicate)
        return skipped
    for block in quantizable_blocks(model):
        nn.quantize(
            model,
            group_size,
            bits,
            mode="affine",
            class_predicate=lambda path, m, block=block: path in block and predicate(path, m),
        )
        modules = dict(model.named_modules())
        mx.eval([modules[path].parameters() for path in block])
        mx.clear_cache()  # this block's float buffers go back to the system
    mx.eval(model.parameters())  # the norms and anything else left
    return skipped


BLOCK = re.compile(r"(layers\.\d+)\.")


def quantizable_blocks(model: nn.Module) -> list[list[str]]:
    """The paths of the layers `nn.quantize` could swap, grouped by transformer block
    (`layers.<i>`; anything outside the blocks, like the embedding, is its own group)."""
    blocks: dict[str, list[str]] = {}
    # In nn.quantize's order (layers.0 first), so skipped layers are listed as before.
    leaves = tree_flatten(model.leaf_modules(), is_leaf=nn.Module.is_module)
    for path, module in leaves:
        if hasattr(module, "to_quantized"):
            key = m.group(1) if (m := BLOCK.match(path)) else path
            blocks.setdefault(key, []).append(path)
    return list(blocks.values())


def quantization_config(config: dict) -> dict:
    """The "quantization" block of config.json (mlx-lm also copies it to "quantization_config")."""
    key = "quantization" if config.get("quantization") is not None else "quantization_config"
    block = config.get(key) or {}
    if not isinstance(block, dict):
        raise ValueError(
            f"config.json has {key}={block!r}"[:150] + '; it must be an object like '
            '{"group_size": 64, "bits": 4, "mode": "affine"}.'
        )
    return block


def infer_quantization(
    shapes: dict[str, tuple[int, ...]], tensors: dict[str, TensorInfo], config: dict, where: str
) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """Module path -> (bits, group_size) for each layer whose `<path>.scales` is in `tensors`,
    and the problems found.

    `shapes` are the float shapes config.json implies; a layer's input size is the second
    axis. `tensors` come from the file headers. A "quantization" block, when present,
    must agree with them.
    """
    block = quantization_config(config)
    if block.get("mode", "affine") != "affine":
        raise ValueError(
            f"{where} uses quantization mode {block['mode']!r}"[:300]
            + "; mlx_jina reads 'affine' only."
        )
    found, errors = {}, []
    for key in sorted(k for k in tensors if k.endswith(".scales")):
        path = key.removesuffix(".scales")
        shape = shapes.get(f"{path}.weight")
        packed, biases = tensors.get(f"{path}.weight"), tensors.get(f"{path}.biases")
        scales = tensors[key]
        if shape is None or len(shape) != 2 or packed is None:
            errors.append(f"{key}: no matching Linear or Embedding layer with a weight")
            continue
        if biases is None:
            errors.append(f"{path}: scales without biases (not affine quantization)")
            continue
        if problem := packing_problem(path, shape, packed, scales, biases):
            errors.append(problem)
            continue
        n_in = shape[1]
        bits, group_size = packed.shape[1] * 32 // n_in, n_in // scales.shape[1]
        # mlx-lm's mixed-precision recipes store per-layer overrides under the layer path.
        layer = block.get(f"model.{path}", block.get(path))
        layer = layer if isinstance(layer, dict) else block
        stated = (layer.get("bits", bits), layer.get("group_size", group_size))
        if stated != (bits, group_size):
            errors.append(
                f"{path}: the config's quantization block says bits={stated[0]!r}, "
                f"group_size={stated[1]!r}, the tensors have bits={bits}, group_size={group_size}"
            )
            continue
        found[path] = (bits, group_size)
    return found, errors


def packing_problem(
    path: str, shape: tuple, packed: TensorInfo, scales: TensorInfo, biases: TensorInfo
) -> str | None:
    """Why uint32 words plus scales and biases are not an affine-quantized `shape` layer."""
    for name, t in ((f"{path}.scales", scales), (f"{path}.biases", biases)):
        if t.dtype not in FLOATS:
            return f"{name} is {t.dtype}; scales and biases must be F16, BF16 or F32"
    if packed.dtype != "U32":
        return f"{path}.weight is {packed.dtype}; a quantized weight is U32"
    if biases.shape != scales.shape:
        return f"{path}.biases has shape {biases.shape}; the scales have {scales.shape}"
    (out, n_in), ok = shape, len(packed.shape) == len(scales.shape) == 2
    bits, bits_rem = divmod(packed.shape[1] * 32, n_in) if ok else (0, 1)
    groups = scales.shape[1] if ok else 0
    if (
        not ok
        or packed.shape[0] != out
        or scales.shape[0] != out
        or bits_rem
        or bits not in STORED_BITS
        or not groups
        or n_in % groups
    ):
        return (
            f"{path}: weight {packed.dtype} {packed.shape} and scales {scales.shape} "
            f"don't fit a quantized layer of shape {shape}"
        )
    if n_in // groups not in GROUP_SIZES:
        return f"{path}: group size {n_in // groups}; MLX runs group sizes 32, 64 and 128"
    return None


def quantize_like(model: nn.Module, layers: dict[str, tuple[int, int]]) -> None:
    """Swap exactly the given layers for quantized ones, so a quantized checkpoint loads."""
    params = {
        p: {"bits": b, "group_size": g, "mode": "affine"}
        for p, (b, g) in layers.items()
    }
    nn.quantize(model, class_predicate=lambda path, _: params.get(path, False))


def quantization_block(bits: int, group_size: int) -> dict:
    """The config.json block mlx-lm writes (and copies to "quantization_config")."""
    return {"group_size": group_size, "bits": bits, "mode": "affine"}


def input_size(module: nn.Module) -> int:
    """Input features of a float or quantized Linear / Embedding."""
    if isinstance(module, (nn.QuantizedLinear, nn.QuantizedEmbedding)):
        return module.weight.shape[1] * 32 // module.bits
    return module.weight.shape[1]


SLOW_ON_CPU = {mx.float16: "float16", mx.bfloat16: "bfloat16"}
_warned: set[str] = set()


def slow_activations(quantized: bool, dtype: mx.Dtype, device: mx.Device) -> str | None:
    """Why this combination is slow, or None: on the CPU, MLX's quantized matmul with
    16-bit activations (and scales) is several times slower than with float32 (4.5x for
    one 4-bit 256x1024 @ 1024x3072 product measured here; 15x reported end to end)."""
    if not quantized or device.type != mx.DeviceType.cpu or dtype not in SLOW_ON_CPU:
        return None
    return (
        f"Quantized weights with {SLOW_ON_CPU[dtype]} activations run several times slower "
        "on the CPU than with float32 ones; load with dtype='float32' (same packed weights, "
        "float32 scales and activations) unless memory is tighter than time."
    )


def warn_slow_activations(model: nn.Module, quantized: bool) -> None:
    """Warn once per process and dtype when `slow_activations` applies to `model`."""
    dtype = model.norm.weight.dtype
    note = slow_activations(quantized, dtype, mx.default_device())
    if note and SLOW_ON_CPU[dtype] not in _warned:
        _warned.add(SLOW_ON_CPU[dtype])
        warnings.warn(note, stacklevel=5)
