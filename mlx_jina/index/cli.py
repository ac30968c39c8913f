"""`mlx-jina index`, `mlx-jina search` and `mlx-jina mcp`: their options and handlers.

Registered by mlx_jina/cli.py through `add_index_commands`. Handlers import MLX only when
they run, so `--help` stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..arg_values import positive_int, positive_seconds


DB = (("--db",), dict(required=True, metavar="FILE", help="the index file (SQLite)"))
LOAD = [
    (("--revision",), dict(help="Hub branch, tag or commit to pin")),
    (("--bits",), dict(type=int, choices=(4, 8), help="quantize the weights")),
    (("--busy-timeout",), dict(type=positive_seconds, default=30.0, metavar="S",
                               help="seconds to wait for another process's write (default: 30)")),
]  # fmt: skip
INDEX = [
    (("folder",), dict(metavar="DIR", help="folder of text, Markdown and source files")),
    DB,
    (("-m", "--model"), dict(help="model folder or repo id; a new index needs one, an existing "
                             "one uses its own (default)")),
    (("--dims", "--truncate-dim"), dict(dest="dims", type=positive_int, metavar="N",
                                         help="Matryoshka size of a new index (default: full)")),
    (("--float16",), dict(action="store_true", help="a new index also stores float16 vectors")),
    (("--include",), dict(action="append", default=[], metavar="GLOB",
                          help="index only matching files (repeatable; default: text, Markdown "
                          "and source suffixes)")),
    (("--exclude",), dict(action="append", default=[], metavar="GLOB",
                          help="skip matching files or folders (repeatable); .gitignore is "
                          "always respected")),
    (("--max-file-bytes",), dict(type=positive_int, default=1 << 20, metavar="N",
                                 help="skip larger files, with a count (default: 1 MiB)")),
    (("--chunk-tokens",), dict(type=positive_int, default=512, metavar="N",
                               help="tokens per passage (default: 512)")),
    (("--overlap",), dict(type=int, default=64, metavar="N",
                          help="tokens neighbouring passages share (default: 64)")),
    (("--json",), dict(action="store_true", help="print the summary as one JSON object")),
]  # fmt: skip
SEARCH = [
    (("query",), dict(help="what to look for")),
    DB,
    (("-k", "--top-k"), dict(dest="k", type=positive_int, default=5, metavar="N",
                             help="results (default: 5)")),
    (("--filter",), dict(metavar="JSON", help='metadata every result holds, e.g. \'{"kind": '
                         '"note"}\'')),
    (("--precision",), dict(default="binary", choices=("binary", "int8", "float16"),
                            help="binary + int8 rescoring (default), int8, or float16")),
    (("--json",), dict(action="store_true", help="print one JSON object per result")),
]  # fmt: skip
MCP = [
    DB,
    (("-m", "--model"), dict(help="model for a new index (default: the index's own)")),
    (("--root",), dict(metavar="DIR", action="append", default=[],
                       help="a folder index_folder may read (repeatable); without one, "
                       "index_folder is refused")),
    (("--http",), dict(action="store_true", help="serve streamable HTTP instead of stdio")),
    (("--host",), dict(default="127.0.0.1", help="HTTP address (default: 127.0.0.1)")),
    (("--port",), dict(type=int, default=8765, help="HTTP port (default: 8765)")),
]  # fmt: skip


def add_index_commands(subs, add_options) -> None:
    """Add `index`, `search` and `mcp` to the `mlx-jina` subcommands."""
    commands = [
        ("index", "index a folder into a local search index (SQLite)", run_index, (INDEX, LOAD)),
        ("search", "search a local index; prints path:lines, score and passage", run_search,
         ([*SEARCH, *LOAD],)),
        ("mcp", "MCP server (stdio): search, remember, forget, index_folder, classify",
         run_mcp, (MCP, LOAD)),
    ]  # fmt: skip
    for name, help_text, handler, tables in commands:
        p = add_options(subs.add_parser(name, help=help_text), *tables)
        p.set_defaults(handler=handler, parser=p)


def _open(args, model=None, **new):
    from .search import Index

    return Index(args.db, model, busy_timeout=args.busy_timeout, bits=args.bits,
                 revision=args.revision, **new)  # fmt: skip


def run_index(args: argparse.Namespace) -> None:
    from .search import display_path

    with _open(args, args.model, dims=args.dims, float16=args.float16) as index:
        s = index.index_folder(
            args.folder, include=tuple(args.include), exclude=tuple(args.exclude),
            max_file_bytes=args.max_file_bytes, chunk_tokens=args.chunk_tokens,
            overlap=args.overlap,
        )  # fmt: skip
        total = index.count()
    for reason, paths in s["skipped_files"].items():
        shown = ", ".join(display_path(p) for p in paths[:3])
        print(f"[INFO] skipped {len(paths)} file(s) {reason}: {shown}"
              + (" ..." if len(paths) > 3 else ""), file=sys.stderr)  # fmt: skip
    if args.json:
        print(json.dumps({**s, "items": total}))
        return
    print(f"{s['embedded']} files embedded ({s['embedded_chunks']} chunks), {s['unchanged']} "
          f"unchanged, {s['removed']} removed ({s['removed_chunks']} chunks), {s['skipped']} "
          f"skipped; {total} items in {args.db}")  # fmt: skip


def run_search(args: argparse.Namespace) -> None:
    from .search import display_path

    filter = None
    if args.filter is not None:
        try:
            filter = json.loads(args.filter)
        except ValueError as e:
            raise ValueError(f"--filter {args.filter!r} is not JSON ({e})") from None
    with _open(args) as index:
        hits = index.search(args.query, args.k, filter, precision=args.precision)
    for hit in hits:
        if args.json:
            print(json.dumps(hit, ensure_ascii=False))
            continue
        where = hit["id"]
        if "source" in hit:
            where = f"{display_path(hit['source'])}:{hit['lines'][0]}-{hit['lines'][1]}"
        print(f"{where}  {hit['score']:.4f}")
        print("    " + " ".join(hit["text"].split())[:300])


def run_mcp(args: argparse.Namespace) -> None:
    try:
        import mcp  # noqa: F401
    except ImportError:
        args.parser.error("the MCP server needs its extra: pip install 'mlx-jina[mcp]'")
    from .mcp_server import serve

    serve(args.db, args.model, roots=args.root, http=args.http, host=args.host, port=args.port,
          busy_timeout=args.busy_timeout, bits=args.bits, revision=args.revision)  # fmt: skip
