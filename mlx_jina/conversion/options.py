"""The `convert` command line (mlx-lm's flag names), light enough that `--help` loads no
MLX; the conversion itself is pipeline.py."""

import argparse

from ..checkpoint import QUANT_MODES, QUANT_RECIPES, WEIGHT_DTYPES
from ..tasks import TASKS


def configure_parser(
    parser: argparse.ArgumentParser | None = None,
) -> argparse.ArgumentParser:
    """The `convert` arguments (mlx-lm's names), on a new parser or a CLI subparser."""
    p = parser or argparse.ArgumentParser(
        prog="convert.py", description="Convert jina-embeddings-v5-text to MLX."
    )
    p.add_argument("--hf-path", required=True, help="Local folder or Hub repo id (base or merged).")
    p.add_argument("--mlx-path", default="mlx_model", help="Output folder (default: mlx_model).")
    p.add_argument(
        "--task",
        choices=TASKS + ("all",),
        help="Adapter to merge; 'all' writes one subfolder per task. Needed for a base repo.",
    )
    p.add_argument(
        "-q", "--quantize", action="store_true",
        help="Quantize the weights (affine 4-bit, group 64 unless a --q-* flag says otherwise).",
    )
    p.add_argument(
        "--q-mode", choices=QUANT_MODES,
        help="MLX quantization mode (default affine; implies -q).",
    )
    p.add_argument(
        "--q-bits", type=int,
        help="Bits: affine 1, 2, 3, 4 (default), 5, 6, 8; mxfp4/nvfp4 4; mxfp8 8 (implies -q).",
    )
    p.add_argument(
        "--q-group-size", type=int,
        help="Group size: affine 32, 64 (default), 128; mxfp4/mxfp8 32; nvfp4 16 (implies -q).",
    )
    p.add_argument(
        "--q-recipe", choices=QUANT_RECIPES,
        help="Mixed precision: the embedding and first/last v_proj, down_proj at 6 bits, "
        "the rest at 4 (mixed-4-6) or 3 (mixed-3-6); implies -q.",
    )
    p.add_argument(
        "--sweep", action="store_true",
        help="Write no model: measure every quantization choice against float and print a table.",
    )
    p.add_argument("--sweep-json", help="With --sweep, also write the results to this JSON file.")
    p.add_argument("--dtype", choices=WEIGHT_DTYPES, help="Float dtype (default: as stored).")
    p.add_argument("--revision", help="Hub branch, tag or commit of --hf-path.")
    p.add_argument("--upload-repo", help="Upload the result to this Hub repo (ORG/NAME).")
    p.add_argument(
        "--format",
        choices=("mlx", "swift", "sentence-transformers"),
        default="mlx",
        help="mlx (default; small's folders also load in MLX Swift), swift (the same, "
        "refused for nano) or sentence-transformers (float weights).",
    )
    p.add_argument("--force", action="store_true",
                   help="Replace an existing --mlx-path that holds an earlier mlx-jina output.")
    return p


def main(argv: list[str] | None = None) -> None:
    """Parse `argv` (default: sys.argv) and convert; user errors exit with one line."""
    from ..closed_pipe import quiet_on_closed_pipe

    parser = configure_parser()
    args = parser.parse_args(argv)
    from .pipeline import convert

    with quiet_on_closed_pipe():
        try:
            convert(**vars(args))
        except (ValueError, FileNotFoundError) as e:
            parser.error(str(e))
