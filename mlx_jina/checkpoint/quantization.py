"""MLX quantization in every mode MLX has: quantize a model, or rebuild the layers a
checkpoint quantized.

An affine layer stores `weight` as uint32 words `[out, in * bits / 32]` plus `scales`
and `biases` `[out, in / group_size]` (docs/model-facts.md); the floating-point modes
(mxfp4, mxfp8, nvfp4) store uint32 words and uint8 scales, no biases. So a checkpoint's
shapes give its bits and group size (and, without biases, its mode) even when config.json
has no "quantization" block; a block, when present, must agree with them.
"""

import re
import warnings
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from . import QUANT_MODES, QUANT_RECIPES
from .safetensors import FLOATS, TensorInfo


@dataclass(frozen=True)
class Mode:
    """What one MLX quantization mode accepts (MLX's table of quantization modes;
    tests/test_quantize_modes.py checks it against what mx.quantize takes)."""

    bits: tuple[int, ...]
    group_sizes: tuple[int, ...]
    default_bits: int
    default_group_size: int
    biases: bool


MODES = {
    "affine": Mode((1, 2, 3, 4, 5, 6, 8), (32, 64, 128), 4, 64, biases=True),
    "mxfp4": Mode((4,), (32,), 4, 32, biases=False),
    "mxfp8": Mode((8,), (32,), 8, 32, biases=False),
    "nvfp4": Mode((4,), (16,), 4, 16, biases=False),
}
assert tuple(MODES) == QUANT_MODES
GROUP_SIZES = MODES["affine"].group_sizes
# What stored files may hold: any bits and group size of any mode.
STORED_BITS = tuple(sorted({b for m in MODES.values() for b in m.bits}))


@dataclass(frozen=True)
class Recipe:
    """Mixed precision: the token embedding and the first and last layers' v_proj and
    down_proj (where quantization error hurts most) at `high` bits, the rest at `low`."""

    low: int
    high: int
    description: str


RECIPES = {
    "mixed-3-6": Recipe(3, 6, "affine 3-bit, 6-bit embedding and first/last v_proj, down_proj"),
    "mixed-4-6": Recipe(4, 6, "affine 4-bit, 6-bit embedding and first/last v_proj, down_proj"),
}
assert tuple(RECIPES) == QUANT_RECIPES
SENSITIVE = ("self_attn.v_proj", "mlp.down_proj")


@dataclass(frozen=True)
class Quantization:
    """One checked choice: a mode, its bits and group size, or a mixed-precision recipe
    (affine; `bits` is then the recipe's low bits)."""

    mode: str = "affine"
    bits: int = 4
    group_size: int = 64
    recipe: str | None = None

    def layer(self, path: str, num_layers: int) -> dict:
        """nn.quantize's parameters for the layer at `path` (e.g. "layers.0.mlp.down_proj")."""
        bits = self.bits
        if self.recipe is not None:
            index = int(m.group(1).split(".")[1]) if (m := BLOCK.match(path)) else None
            edge = index in (0, num_layers - 1) and path.endswith(SENSITIVE)
            if path == "embed_tokens" or edge:
                bits = RECIPES[self.recipe].high
        return {"group_size": self.group_size, "bits": bits, "mode": self.mode}

    @property
    def label(self) -> str:
        if self.recipe is not None:
            r = RECIPES[self.recipe]
            return f"{self.recipe} (affine {r.low}/{r.high}-bit, group {self.group_size})"
        mode = "" if self.mode == "affine" else f"{self.mode} "
        return f"{mode}{self.bits}-bit, group {self.group_size}"


def resolve_quantization(
    bits: int | None = None,
    group_size: int | None = None,
    mode: str | None = None,
    recipe: str | None = None,
) -> Quantization | None:
    """The choice these settings name, or None (all None: float weights). Refuses, by
    name, any combination MLX can't run, before any work is done."""
    if bits is None and group_size is None and mode is None and recipe is None:
        return None
    if recipe is not None:
        if not isinstance(recipe, str) or recipe not in RECIPES:
            raise ValueError(
                f"recipe={recipe!r}; choose one of {', '.join(RECIPES)} "
                "(or None for a single bit width)."
            )
        clash = f"mode={mode!r}" if mode not in (None, "affine") else bits and f"bits={bits!r}"
        if clash or bits is not None:
            raise ValueError(
                f"recipe={recipe!r} sets its own bits and the affine mode; drop {clash or 'bits'}."
            )
    mode = "affine" if mode is None else mode
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"mode={mode!r}; choose one of {', '.join(MODES)}.")
    spec = MODES[mode]
    if recipe is not None:
        bits = RECIPES[recipe].low
    bits = spec.default_bits if bits is None else bits
    if type(bits) is not int or bits not in spec.bits:
        others = "" if mode == "affine" else f" (affine takes {listed(MODES['affine'].bits)})"
        raise ValueError(f"bits={bits!r} with mode={mode!r}; {mode} takes bits {listed(spec.bits)}{others}.")
    group_size = spec.default_group_size if group_size is None else group_size
    if type(group_size) is not int or group_size not in spec.group_sizes:
        raise ValueError(
            f"group_size={group_size!r} with mode={mode!r}; MLX's {mode} quantization takes "
            f"{listed(spec.group_sizes)}"
            + (" (64 is the default and what Jina used)." if mode == "affine" else ".")
        )
    return Quantization(mode, bits, group_size, recipe)


def listed(values: tuple[int, ...]) -> str:
    return ", ".join(map(str, values))


def check_settings(quant: Quantization, hidden_size: int) -> None:
    """Refuse a group size that would leave the embedding and most layers float."""
    if hidden_size % quant.group_size:
        raise ValueError(
            f"group_size={quant.group_size} does not divide the hidden size {hidden_size}, so the "
            "embedding and most layers could not be quantized. Pick a group size that divides it."
        )


def quantize_model(model: nn.Module, quant: Quantization, *, layerwise: bool = False) -> list[str]:
    """Quantize every Linear layer and the token embedding in place, as `quant` says.

    Returns the paths of layers left in float because their input size is not a multiple
    of the group size (MLX quantizes whole groups along the input dimension).

    `layerwise=True` (loading from float weights that are still lazy): quantize and
    evaluate one block at a time (the embedding, each transformer layer, the rest), so
    only one block's float weights are ever in memory next to the quantized model. The
    arrays are the same as `nn.quantize` on the whole model gives: the same calls on the
    same weights, only evaluated earlier. The caller must hold no other reference to the
    float weights, or they stay in memory once read.
    """
    check_settings(quant, model.args.hidden_size)
    skipped = []
    num_layers = len(model.layers)

    def predicate(path: str, module: nn.Module) -> bool | dict:
        if not hasattr(module, "to_quantized"):
            return False
        if module.weight.shape[-1] % quant.group_size:
            skipped.append(path)
            return False
        return quant.layer(path, num_layers)

    if not layerwise:
        nn.quantize(model, class_predicate=predicate)
        return skipped
    for block in quantizable_blocks(model):
        nn.quantize(
            model,
            class_predicate=lambda path, m, block=block: path in block and predicate(path, m),
        )
        modules = dict(model.named_modules())
        mx.eval([modules[path].parameters() for path in block])
        mx.clear_cache()  # this block's float buffers go back to the system
    mx.eval(model.parameters())  # the norms and anything else left
    return skipped


def quantized_layers(model: nn.Module) -> dict[str, tuple[int, int, str]]:
    """Module path -> (bits, group_size, mode) of each quantized layer."""
    kinds = (nn.QuantizedLinear, nn.QuantizedEmbedding)
    return {
        p: (m.bits, m.group_size, m.mode) for p, m in model.named_modules() if isinstance(m, kinds)
    }


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
) -> tuple[dict[str, tuple[int, int, str]], list[str]]:
    """Module path -> (bits, group_size, mode) for each layer whose `<path>.scales` is in
    `tensors`, and the problems found.

    `shapes` are the float shapes config.json implies; a layer's input size is the second
    axis. `tensors` come from the file headers. A "quantization" block, when present,
    must agree with them; its per-layer overrides (mlx-lm's and MLX Swift's form: the
    module path, e.g. "model.layers.0.mlp.down_proj", maps to its own "bits",
    "group_size" and "mode") take precedence over its top-level values.
    """
    block = quantization_config(config)
    if (mode := block.get("mode", "affine")) not in MODES:
        raise ValueError(
            f"{where} uses quantization mode {mode!r}"[:300]
            + f"; MLX has {', '.join(MODES)}."
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
        if problem := packing_problem(path, shape, packed, scales, biases):
            errors.append(problem)
            continue
        n_in = shape[1]
        bits, group_size = packed.shape[1] * 32 // n_in, n_in // scales.shape[1]
        layer = block.get(f"model.{path}", block.get(path))
        layer = {**block, **layer} if isinstance(layer, dict) else block
        modes = shape_modes(bits, group_size, biases is not None)
        if not modes:
            kind = "scales and biases" if biases is not None else "scales without biases"
            errors.append(
                f"{path}: {bits}-bit, group size {group_size} with {kind} is no MLX "
                "quantization mode"
            )
            continue
        # Without a stated mode, biases mean affine; the others differ in bits and groups.
        mode = layer.get("mode", modes[0])
        stated = (layer.get("bits", bits), layer.get("group_size", group_size), mode)
        if stated != (bits, group_size, mode) or mode not in modes:
            errors.append(
                f"{path}: the config's quantization block says bits={stated[0]!r}, "
                f"group_size={stated[1]!r}, mode={mode!r}; the tensors have bits={bits}, "
                f"group_size={group_size}, {'mode ' + ' or '.join(modes)}"
            )
            continue
        found[path] = (bits, group_size, mode)
    return found, errors


def shape_modes(bits: int, group_size: int, biases: bool) -> list[str]:
    """The modes whose layers have these bits and group size, with or without biases."""
    return [
        name
        for name, m in MODES.items()
        if m.biases == biases and bits in m.bits and group_size in m.group_sizes
    ]


def packing_problem(
    path: str, shape: tuple, packed: TensorInfo, scales: TensorInfo, biases: TensorInfo | None
) -> str | None:
    """Why uint32 words plus scales (and biases) are not a quantized `shape` layer."""
    if biases is None:  # mxfp4, mxfp8, nvfp4: 8-bit float scales stored as uint8
        if scales.dtype != "U8":
            return (
                f"{path}: scales without biases must be U8 (mxfp4, mxfp8 or nvfp4), "
                f"not {scales.dtype}"
            )
    else:
        for name, t in ((f"{path}.scales", scales), (f"{path}.biases", biases)):
            if t.dtype not in FLOATS:
                return f"{name} is {t.dtype}; scales and biases must be F16, BF16 or F32"
        if biases.shape != scales.shape:
            return f"{path}.biases has shape {biases.shape}; the scales have {scales.shape}"
    if packed.dtype != "U32":
        return f"{path}.weight is {packed.dtype}; a quantized weight is U32"
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
    modes = [m for m in MODES.values() if m.biases == (biases is not None)]
    sizes = sorted({g for m in modes for g in m.group_sizes})
    if n_in // groups not in sizes:
        listed = ", ".join(map(str, sizes[:-1])) + f" and {sizes[-1]}"
        kind = "with scales and biases (affine)" if biases is not None else "without biases"
        return f"{path}: group size {n_in // groups}; MLX runs group sizes {listed} {kind}"
    return None


def quantize_like(model: nn.Module, layers: dict[str, tuple[int, int, str]]) -> None:
    """Swap exactly the given layers for quantized ones, so a quantized checkpoint loads."""
    params = {p: {"bits": b, "group_size": g, "mode": m} for p, (b, g, m) in layers.items()}
    nn.quantize(model, class_predicate=lambda path, _: params.get(path, False))


def quantization_block(model: nn.Module) -> dict:
    """The config.json block mlx-lm writes (and copies to "quantization_config"): the most
    common setting on top, and each layer that differs under its module path as mlx-lm
    and MLX Swift read it ("model." + path, like the weight keys)."""
    layers = quantized_layers(model)
    settings = list(layers.values())
    bits, group_size, mode = max(set(settings), key=settings.count)
    block = {"group_size": group_size, "bits": bits, "mode": mode}
    for path, (b, g, m) in layers.items():
        if (b, g, m) != (bits, group_size, mode):
            block[f"model.{path}"] = {"group_size": g, "bits": b, "mode": m}
    return block


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
