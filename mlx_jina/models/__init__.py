"""Backbones: a registry of what differs between them, and detection from a checkpoint.

A backbone is one `Backbone` entry, registered by its own file (qwen3.py, eurobert.py):
the shared decoder (decoder.py) builds any of them. Adding an architecture that fits the
decoder is one more such file, plus its import below.
"""

from __future__ import annotations

from dataclasses import dataclass

# Jina's wrapper model_type; the backbone inside is named by "architectures" or the weights.
WRAPPER_MODEL_TYPE = "jina_embeddings_v5"


@dataclass(frozen=True)
class Backbone:
    """What differs between backbones; everything else is the shared decoder."""

    model_type: str  # config.json "model_type"
    causal: bool  # causal attention (padding needs no mask), or bidirectional with one
    qk_norm: bool  # per-head RMSNorm of q and k before RoPE (Qwen3)
    context: int  # max_position_embeddings when config.json has none
    architectures: tuple[str, ...] = ()  # words in "architectures" that name it
    pooling: str = "last"  # which hidden state is the embedding (decoder.POOLING)
    jina_wrapped: bool = False  # published under Jina's own model_type too

    @property
    def attention(self) -> str:
        return "causal" if self.causal else "bidirectional"


BACKBONES: dict[str, Backbone] = {}


def register(backbone: Backbone) -> Backbone:
    """Make `backbone` loadable: checkpoints with its model_type (or architectures) use it."""
    BACKBONES[backbone.model_type] = backbone
    return backbone


def detect_backbone(config: dict, keys: set[str]) -> Backbone:
    """The backbone of a checkpoint, from config.json and its weight names."""
    model_type = config.get("model_type")
    has_layers = any(".self_attn." in k for k in keys)
    has_q_norm = any(k.endswith("self_attn.q_norm.weight") for k in keys)
    if isinstance(model_type, str) and model_type in BACKBONES:
        backbone = BACKBONES[model_type]
    elif model_type == WRAPPER_MODEL_TYPE:
        backbone = _wrapped_backbone(config, has_layers, has_q_norm)
    else:
        raise ValueError(
            f"Unsupported model_type {model_type!r}"[:100]
            + f"; expected one of {', '.join(map(repr, [WRAPPER_MODEL_TYPE, *BACKBONES]))}."
        )
    if not backbone.causal and config.get("is_decoder") is True:
        raise ValueError(
            f"config.json has is_decoder=true, but {backbone.model_type} attends both ways "
            "(bidirectional); a causal variant is not supported. Set it to false or remove it."
        )
    if has_layers and has_q_norm != backbone.qk_norm:
        raise ValueError(
            f"config.json describes a {backbone.model_type} model but the weights "
            f"{'have' if has_q_norm else 'lack'} q_norm/k_norm. The config and weights disagree."
        )
    return backbone


def _wrapped_backbone(config: dict, has_layers: bool, has_q_norm: bool) -> Backbone:
    wrapped = [b for b in BACKBONES.values() if b.jina_wrapped]
    archs = " ".join(config.get("architectures") or []).lower()
    named = [b for b in wrapped if any(word in archs for word in b.architectures)]
    if len(named) == 1:
        return named[0]
    # Else the weights tell: Jina's backbones differ in their q/k norms.
    fitting = [b for b in wrapped if b.qk_norm == has_q_norm]
    if has_layers and len(fitting) == 1:
        return fitting[0]
    raise ValueError(
        f"Can't tell the backbone: config.json says model_type {WRAPPER_MODEL_TYPE!r} and "
        f"names no known architecture{'' if has_layers else ', and the weights have no attention layers'}. "
        f"Set model_type to one of {', '.join(map(repr, BACKBONES))}."
    )


# Each file registers its backbone.
from . import eurobert, qwen3  # noqa: E402,F401
