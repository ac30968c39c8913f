"""The package version: a leaf module, so any layer may read it (pyproject.toml does too)."""

__version__ = "0.1.0"
