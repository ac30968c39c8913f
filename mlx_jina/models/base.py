"""Pieces shared by both backbones: config parsing and the rope theta lookup."""

import inspect
from dataclasses import dataclass
from typing import Any


@dataclass
class BaseModelArgs:
    @classmethod
    def from_dict(cls, params: dict[str, Any]):
        """Build the args from a config.json dict, dropping keys the model doesn't use."""
        fields = inspect.signature(cls).parameters
        required = [k for k, p in fields.items() if p.default is p.empty and k != "rope_theta"]
        if missing := [k for k in required if params.get(k) is None]:
            raise ValueError(f"config.json lacks {', '.join(missing)}; is this a model config?")
        kwargs = {k: v for k, v in params.items() if k in fields}
        kwargs["rope_theta"] = rope_theta(params)
        if kwargs.get("num_key_value_heads") is None:
            kwargs["num_key_value_heads"] = params["num_attention_heads"]
        if kwargs.get("head_dim") is None:
            kwargs["head_dim"] = params["hidden_size"] // params["num_attention_heads"]
        return cls(**kwargs)


def rope_theta(config: dict[str, Any]) -> float:
    """The RoPE base from a transformers 4.x (top level) or 5.x (rope_parameters) config.

    Never defaults: a wrong theta gives plausible but worse vectors.
    """
    params = config.get("rope_parameters") or {}
    scaling = config.get("rope_scaling") or {}
    top, nested = config.get("rope_theta"), params.get("rope_theta")
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
        kind = block.get("rope_type", block.get("type", "default"))
        factor = float(block.get("factor", 1.0) or 1.0)
        # EuroBERT's remote code rewrites "default" as "linear" with factor 1.0.
        if kind not in ("default", "linear") or factor != 1.0:
            raise ValueError(
                f"Unsupported RoPE scaling {block!r}; only the default RoPE is supported."
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
