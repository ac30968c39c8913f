"""`mlx-jina embed -i CORPUS --out-dir DIR`: the options and the handler.

mlx_jina/cli.py adds these options to `embed` and calls `run_corpus(args)` when
`--out-dir` is given. Nothing heavy is imported until `run_corpus` runs, so `--help`
stays free of MLX.
"""

from __future__ import annotations

import argparse
import sys


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def add_corpus_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add --out-dir, --shard-size, --text-field, --stall-timeout and --force to `embed`."""
    group = parser.add_argument_group("large corpora (resumable; see docs/corpus.md)")
    group.add_argument("--out-dir", metavar="DIR",
                       help="embed -i FILE (or stdin) into DIR shard by shard; run the same "
                       "command again to resume after a crash; read with load_embeddings(DIR)")
    group.add_argument("--shard-size", type=_positive_int, metavar="N",
                       help="texts per shard with --out-dir (default: 10000)")
    group.add_argument("--text-field", default="text", metavar="NAME",
                       help="the JSON field holding the text in .jsonl input (default: text)")
    group.add_argument("--stall-timeout", type=_positive_float, metavar="SECONDS",
                       help="under mlx.launch: stop the job, naming the rank, when a shard "
                       "takes longer (a frozen Mac); default: no limit")
    group.add_argument("--force", action="store_true",
                       help="with --out-dir: start over in a folder holding another job "
                       "(deletes only files its manifest proves the job wrote)")
    return parser  # fmt: skip


def run_corpus(args: argparse.Namespace) -> None:
    """Run `embed --out-dir`: the corpus job, its progress bar, then one summary line."""
    if getattr(args, "texts", None):
        raise ValueError("--out-dir reads -i FILE or stdin, not texts given as arguments.")
    if getattr(args, "output", None):
        raise ValueError("pass -o FILE.npy or --out-dir DIR, not both.")
    source = args.input or "-"
    if source == "-" and sys.stdin.isatty():
        raise ValueError("no input: pass -i FILE, or pipe the texts on stdin.")
    from .job import embed_corpus

    options = dict(
        task=args.task, prompt_name=args.prompt_name, truncate_dim=args.truncate_dim,
        precision=args.precision, batch_size=args.batch_size, max_length=args.max_length,
        split_special_tokens=args.split_special_tokens,
    )  # fmt: skip
    result = embed_corpus(
        args.model, source, args.out_dir,
        shard_size=args.shard_size, text_field=args.text_field,
        jsonl=True if args.jsonl else None, force=args.force, stall_timeout=args.stall_timeout,
        load_options=dict(bits=args.bits, dtype=args.dtype, revision=args.revision),
        **{k: v for k, v in options.items() if v is not None},
    )  # fmt: skip
    if result is not None:  # None: a rank > 0 under mlx.launch, which wrote nothing
        print(result.summary(), file=sys.stderr)
