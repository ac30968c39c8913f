"""EuroBERT, the backbone of jina-embeddings-v5-text-nano.

Reference: transformers EuroBertModel. A Llama-style encoder: bidirectional attention
with a padding mask, and no q/k norms. The shared decoder (decoder.py) returns the final
hidden states; no MLM head.
"""

from . import Backbone, register

BACKBONE = register(
    Backbone(
        model_type="eurobert",
        causal=False,
        qk_norm=False,
        context=8192,
        architectures=("eurobert",),
        jina_wrapped=True,
    )
)
