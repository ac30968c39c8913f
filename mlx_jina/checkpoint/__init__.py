"""Checkpoints: from a folder or Hub repo to a built model.

hub.py fetches only the files we read; folder.py tells the layout and reads the small
files; safetensors.py reads untrusted headers; weights.py, adapters.py and
quantization.py read and check the tensors (adapters.py also attaches them unmerged);
identity.py hashes a model's content; loader.py builds the model for `load()`
(mlx_jina/loading.py); facts.py is `info`.
"""

# The float dtypes weights may be cast to, by name (the CLI lists them without MLX).
WEIGHT_DTYPES = ("float16", "bfloat16", "float32")
# MLX's quantization modes and mlx_jina's mixed-precision recipes, by name (quantization.py
# holds what each means).
QUANT_MODES = ("affine", "mxfp4", "mxfp8", "nvfp4")
QUANT_RECIPES = ("mixed-3-6", "mixed-4-6")


def list_problems(problems: list[str], shown: int = 5) -> str:
    """The first few problems, one per line, and how many more: messages stay short."""
    more = f"\n  ... and {len(problems) - shown} more" if len(problems) > shown else ""
    return "\n  " + "\n  ".join(problems[:shown]) + more
