"""A third backbone in one file's worth of code, as a file under mlx_jina/models/ would be:
Qwen3's layers (q/k norms) with bidirectional attention. tests/test_layout.py loads it."""

from mlx_jina.models import Backbone, register

BACKBONE = register(
    Backbone(model_type="toy_bidir_qwen3", causal=False, qk_norm=True, context=512,
             architectures=("toybidir",))
)  # fmt: skip
