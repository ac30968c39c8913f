"""Qwen3, the backbone of jina-embeddings-v5-text-small.

Reference: transformers Qwen3Model. Causal attention, and an RMSNorm on each head of q
and k before RoPE. The shared decoder (decoder.py) returns the final hidden states; no LM
head.
"""

from . import Backbone, register

BACKBONE = register(
    Backbone(
        model_type="qwen3",
        causal=True,
        qk_norm=True,
        context=32768,
        architectures=("qwen3",),
        jina_wrapped=True,
    )
)
