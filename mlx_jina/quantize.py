"""MLX affine quantization: quantize a model, or rebuild the layers a checkpoint quantized.

A quantized layer stores `weight` as uint32 words `[out, in * bits / 32]` plus `scales`
and `biases` `[out, in / group_size]` (model-facts §10), so a checkpoint's shapes give
its bits and group size even when config.json has no "quantization" block.
"""

import mlx.core as mx
import mlx.nn as nn

BITS = (4, 8)
GROUP_SIZES = (32, 64, 128)
# What MLX's affine mode can store; files from other tools may use any of these.
STORED_BITS = (2, 3, 4, 5, 6, 8)


def check_settings(bits: int, group_size: int, hidden_size: int | None = None) -> None:
    """Refuse bits and group sizes we don't write, before any work is done."""
    if bits not in BITS:
        raise ValueError(f"bits={bits!r}; choose 4 or 8 (or None for float weights).")
    if group_size not in GROUP_SIZES:
        raise ValueError(
            f"group_size={group_size!r}; MLX affine quantization takes "
            f"{', '.join(map(str, GROUP_SIZES))} (64 is the default and what Jina used)."
        )
    if hidden_size is not None and hidden_size % group_size:
        raise ValueError(
            f"group_size={group_size} does not divide the hidden size {hidden_size}, so the "
            "embedding and most layers could not be quantized. Pick a group size that divides it."
        )


def quantize_model(model: nn.Module, bits: int, group_size: int = 64) -> list[str]:
    """Quantize every Linear layer and the token embedding in place.

    Returns the paths of layers left in float because their input size is not a multiple
    of `group_size` (MLX quantizes whole groups along the input dimension).
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

    nn.quantize(model, group_size, bits, mode="affine", class_predicate=predicate)
    return skipped


def infer_quantization(
    model: nn.Module, weights: dict[str, mx.array], config: dict, where: str
) -> dict[str, tuple[int, int]]:
    """Module path -> (bits, group_size) for each layer whose `<path>.scales` is in `weights`.

    `model` is the float model built from config.json; its layer shapes give each layer's
    input size. A "quantization" block in the config, when present, must agree.
    """
    modules = dict(model.named_modules())
    block = config.get("quantization") or config.get("quantization_config") or {}
    if block.get("mode", "affine") != "affine":
        raise ValueError(
            f"{where} uses quantization mode {block['mode']!r}; mlx_jina reads 'affine' only."
        )
    found, errors = {}, []
    for key in sorted(k for k in weights if k.endswith(".scales")):
        path = key.removesuffix(".scales")
        module = modules.get(path)
        packed, scales = weights.get(f"{path}.weight"), weights[key]
        if not hasattr(module, "to_quantized") or packed is None:
            errors.append(f"{key}: no matching Linear or Embedding layer with a weight")
            continue
        if f"{path}.biases" not in weights:
            errors.append(f"{path}: scales without biases (not affine quantization)")
            continue
        n_in = module.weight.shape[1]
        bits, bits_rem = divmod(packed.shape[1] * 32, n_in)
        group_size, group_rem = divmod(n_in, scales.shape[1])
        if (
            packed.dtype != mx.uint32
            or bits_rem
            or group_rem
            or bits not in STORED_BITS
        ):
            errors.append(
                f"{path}: weight {packed.dtype} {tuple(packed.shape)} and scales "
                f"{tuple(scales.shape)} don't fit a quantized layer with {n_in} inputs"
            )
            continue
        # mlx-lm's mixed-precision recipes store per-layer overrides under the layer path.
        layer = block.get(f"model.{path}", block.get(path))
        layer = layer if isinstance(layer, dict) else block
        stated = (layer.get("bits", bits), layer.get("group_size", group_size))
        if stated != (bits, group_size):
            errors.append(
                f"{path}: the config's quantization block says bits={stated[0]}, "
                f"group_size={stated[1]}, the tensors have bits={bits}, group_size={group_size}"
            )
            continue
        found[path] = (bits, group_size)
    if errors:
        raise ValueError(
            f"Quantized weights in {where} don't fit the model:\n  "
            + "\n  ".join(errors)
        )
    return found


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
