"""The `convert` command line (mlx-lm's flag names), light enough that `--help` loads no
MLX; the conversion itself is pipeline.py."""

import argparse

from ..checkpoint import WEIGHT_DTYPES
from ..tasks import TASKS


def configure_parser(
    parser: argparse.ArgumentParser | None = None,
) -> argparse.ArgumentParser:
    """The `convert` arguments (mlx-lm's names), on a new parser or a CLI subparser."""
    p = parser or argparse.ArgumentParser(
        prog="convert.py", description="Convert jina-embeddings-v5-text to MLX."
    )
    p.add_argument(
        "--hf-path", required=True, help="Local folder or Hub repo id (base or merged)."
    )
    p.add_argument(
        "--mlx-path", default="mlx_model", help="Output folder (default: mlx_model)."
    )
    p.add_argument(
        "--task",
        choices=TASKS + ("all",),
        help="Adapter to merge; 'all' writes one subfolder per task. Needed for a base repo.",
    )
    p.add_argument(
        "-q", "--quantize", action="store_true", help="Quantize the weights."
    )
    p.add_argument(
        "--q-bits", type=int, choices=(4, 8), default=4, help="Bits (default 4)."
    )
    p.add_argument(
        "--q-group-size", type=int, default=64, help="Group size (default 64)."
    )
    p.add_argument(
        "--dtype", choices=WEIGHT_DTYPES, help="Float dtype (default: as stored)."
    )
    p.add_argument("--revision", help="Hub branch, tag or commit of --hf-path.")
    p.add_argument(
        "--upload-repo", help="Upload the result to this Hub repo (ORG/NAME)."
    )
    p.add_argument(
        "--format",
        choices=("mlx", "swift", "sentence-transformers"),
        default="mlx",
        help="mlx (default; small's folders also load in MLX Swift), swift (the same, "
        "refused for nano) or sentence-transformers (float weights).",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="Replace an existing --mlx-path that holds an earlier mlx-jina output.",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    """Parse `argv` (default: sys.argv) and convert; user errors exit with one line."""
    from ..cli import quiet_on_closed_pipe

    parser = configure_parser()
    args = parser.parse_args(argv)
    from .pipeline import convert

    with quiet_on_closed_pipe():
        try:
            convert(**vars(args))
        except (ValueError, FileNotFoundError) as e:
            parser.error(str(e))
