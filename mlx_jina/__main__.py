"""`python -m mlx_jina` runs the `mlx-jina` command."""

from .cli import main

if __name__ == "__main__":
    main()
