"""Conversion to MLX folders: `convert()` (pipeline.py) and its command line (options.py),
where it may write (destination.py), the model card (card.py) and the quantization
report (quality.py). `convert` is imported on first use, so `--help` loads no MLX."""

from .destination import QUALITY_FILE
from .options import configure_parser, main

__all__ = ["QUALITY_FILE", "configure_parser", "convert", "main"]


def __getattr__(name: str):
    if name == "convert":
        from .pipeline import convert

        return convert
    raise AttributeError(f"module 'mlx_jina.conversion' has no attribute {name!r}")
