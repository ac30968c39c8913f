"""The error of a distributed corpus job, importable without MLX (the CLI catches it)."""


class ShardPoolError(RuntimeError):
    """The distributed job cannot go on (a rank was lost or failed); its str is one line."""
