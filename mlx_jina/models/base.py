"""The config both backbones read: fields checked for type and range, head shapes from
the weights when the config lacks them, the RoPE base, and checkpoint key names."""

import json
import math
from dataclasses import MISSING, dataclass, fields
from typing import Any

Q_PROJ = "layers.0.self_attn.q_proj.weight"
K_PROJ = "layers.0.self_attn.k_proj.weight"
# The models have 32K (small) and 8K (nano); more is a broken config, not a long context.
MAX_CONTEXT = 1 << 24
# Sane ranges of the float fields. The published values (eps 1e-6 / 1e-5, theta 3.5e6 /
# 1e6) sit well inside; outside them the arithmetic gives inf, NaN or no position signal.
FLOAT_RANGES = {"rms_norm_eps": (1e-12, 1e-2), "rope_theta": (10.0, 1e12)}
# What the decoder runs: SiLU, RMSNorm, bias-free projections, full attention. Any other
# value would run silently as these; null or absent means the same default.
IMPLEMENTED = {
    "hidden_act": ("silu",),
    "attention_bias": (False,),
    "mlp_bias": (False,),
    "use_sliding_window": (False,),
    "partial_rotary_factor": (1.0,),
    "layer_norm_eps": (),  # a LayerNorm model; these use RMSNorm (rms_norm_eps)
}
ROPE_KEYS = {"rope_theta", "rope_type", "type", "factor"}


@dataclass
class ModelArgs:
    """The config.json fields the shared decoder reads (their names, as in the file)."""

    hidden_size: int
    num_hidden_layers: int
    intermediate_size: int
    num_attention_heads: int
    rms_norm_eps: float
    vocab_size: int
    rope_theta: float
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    max_position_embeddings: int | None = None

    @classmethod
    def from_dict(
        cls, params: dict[str, Any], shapes: dict[str, tuple] | None = None, context: int = 0
    ) -> "ModelArgs":
        """Build the args from a config.json dict, dropping keys the model doesn't use.

        Every field is checked for type and range. `shapes` (tensor name -> shape, from
        the weight files) supplies a missing head_dim / num_key_value_heads; `context`
        a missing max_position_embeddings.
        """
        types = {f.name: f.type for f in fields(cls)}
        required = [f.name for f in fields(cls) if f.default is MISSING]
        required.remove("rope_theta")  # either place; rope_theta() says which is missing
        if missing := [k for k in required if params.get(k) is None]:
            raise ValueError(f"config.json lacks {', '.join(missing)}; is this a model config?")
        check_implemented(params)
        kwargs = {k: v for k, v in params.items() if k in types and v is not None}
        for name, value in kwargs.items():
            check_field(name, value, types[name])
        kwargs["rope_theta"] = rope_theta(params)
        kwargs["head_dim"], kwargs["num_key_value_heads"] = head_shapes(kwargs, shapes or {})
        kwargs.setdefault("max_position_embeddings", context)
        return cls(**kwargs)


def check_implemented(config: dict[str, Any]) -> None:
    """Refuse, by name, config values for layers the decoder does not have."""
    problems = [
        f"{key}={json.dumps(config[key])}"[:100]
        + (f" (supported: {', '.join(json.dumps(v) for v in ok)})" if ok else " (not supported)")
        for key, ok in IMPLEMENTED.items()
        if config.get(key) is not None and not any(same(config[key], v) for v in ok)
    ]
    types = config.get("layer_types")
    if types is not None and (
        not isinstance(types, list) or any(t != "full_attention" for t in types)
    ):
        problems.append(
            f"layer_types={json.dumps(types)}"[:100] + ' (every layer must be "full_attention")'
        )
    if problems:
        raise ValueError(
            f"config.json has {'; '.join(problems)}. mlx_jina runs the published "
            "jina-embeddings-v5 backbones only (SiLU, RMSNorm, no biases, full attention); "
            "this model would compute something else."
        )


def same(value: Any, supported: Any) -> bool:
    """Equal, and both or neither a bool (true is not 1)."""
    return value == supported and (type(value) is bool) == (type(supported) is bool)


def check_field(name: str, value: Any, kind: Any) -> None:
    """Sizes and counts are whole numbers >= 1; eps and theta finite, in a sane range."""
    if kind is bool:
        ok, need = type(value) is bool, "true or false"
    elif kind is float:
        low, high = FLOAT_RANGES.get(name.rsplit(".", 1)[-1], (0.0, math.inf))
        ok = type(value) in (int, float) and math.isfinite(value) and low <= value <= high
        ok = ok and value > 0
        need = "a positive number" + (f" from {low:g} to {high:g}" if high < math.inf else "")
    else:  # int or int | None
        limit = MAX_CONTEXT if name == "max_position_embeddings" else math.inf
        ok = type(value) is int and 1 <= value <= limit
        need = "a whole number >= 1" + (f" and <= {limit:,}" if limit < math.inf else "")
    if not ok:
        raise ValueError(f"config.json has {name}={value!r}"[:150] + f"; it must be {need}.")


def head_shapes(args: dict[str, Any], shapes: dict[str, tuple]) -> tuple[int, int]:
    """head_dim and num_key_value_heads, by one rule: config.json's values; else read from
    the q_proj / k_proj rows when the weights are known; else transformers' defaults
    (hidden_size / heads, one KV head per query head).

    Qwen3's head_dim needn't be hidden / heads (transformers would assume 128): the
    weights know. Packed quantized weights keep the output size as their first axis.
    """
    heads, head_dim = args["num_attention_heads"], args.get("head_dim")
    if head_dim is None:
        q = shapes.get(Q_PROJ)
        hidden = args["hidden_size"]
        if q:
            rows, what = q[0], f"{Q_PROJ} has {q[0]} rows,"
        else:
            rows, what = hidden, f"hidden_size={hidden} is"
        if rows % heads or rows < heads:
            raise ValueError(
                f"config.json has no head_dim, and {what} not a multiple of "
                f"num_attention_heads={heads}. Set head_dim in config.json."
            )
        head_dim = rows // heads
    kv = args.get("num_key_value_heads")
    if kv is None:
        k = shapes.get(K_PROJ)
        if k and (k[0] % head_dim or k[0] < head_dim):
            raise ValueError(
                f"{K_PROJ} has {k[0]} rows, not a multiple of head_dim={head_dim}; "
                "set num_key_value_heads in config.json."
            )
        kv = k[0] // head_dim if k else heads
    if heads % kv:
        raise ValueError(
            f"num_key_value_heads={kv} does not divide num_attention_heads={heads}: each "
            "key/value head serves a whole group of query heads. Fix config.json."
        )
    return head_dim, kv


def rope_block(config: dict[str, Any], key: str) -> dict[str, Any]:
    value = config.get(key)
    if value is not None and not isinstance(value, dict):
        raise ValueError(f"config.json has {key}={value!r}"[:150] + "; it must be an object.")
    return value or {}


def rope_theta(config: dict[str, Any]) -> float:
    """The RoPE base from a transformers 4.x (top level) or 5.x (rope_parameters) config.

    Never defaults: a wrong theta gives plausible but worse vectors.
    """
    params, scaling = rope_block(config, "rope_parameters"), rope_block(config, "rope_scaling")
    top, nested = config.get("rope_theta"), params.get("rope_theta")
    for name, value in (("rope_theta", top), ("rope_parameters.rope_theta", nested)):
        if value is not None:
            check_field(name, value, float)
    if top is not None and nested is not None and float(top) != float(nested):
        raise ValueError(
            f"config.json has rope_theta={top} and rope_parameters.rope_theta={nested}; "
            "they must agree. Fix the config."
        )
    theta = top if top is not None else nested
    if theta is None:
        raise ValueError(
            "config.json has neither rope_theta nor rope_parameters.rope_theta. "
            "Add the model's RoPE base (small: 3500000, nano: 1000000)."
        )
    for block in (params, scaling):
        if unknown := sorted(k for k, v in block.items() if k not in ROPE_KEYS and v is not None):
            raise ValueError(
                f"config.json's RoPE settings hold {', '.join(unknown)}"[:200]
                + f"; only the default RoPE is supported ({', '.join(sorted(ROPE_KEYS))})."
            )
        kind = block.get("rope_type", block.get("type", "default"))
        # EuroBERT's remote code rewrites "default" as "linear" with factor 1.0.
        if kind not in ("default", "linear") or block.get("factor", 1.0) not in (None, 1.0):
            raise ValueError(
                f"Unsupported RoPE scaling {block!r}"[:200]
                + "; only the default RoPE is supported."
            )
    return float(theta)


def sanitize(weights: dict) -> dict:
    """Checkpoint keys -> module paths: strip one leading `model.`, drop any LM head.

    Base repos store bare keys, MLX repos prefix `model.`; applying this twice is a no-op.
    """
    out = {}
    for key, value in weights.items():
        if key.startswith("lm_head."):
            continue
        out[key[len("model.") :] if key.startswith("model.") else key] = value
    return out
