"""Backbones by model_type. The registry is a plain dict; no dynamic imports."""

from . import eurobert, qwen3

MODELS = {"qwen3": qwen3, "eurobert": eurobert}
