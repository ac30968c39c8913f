"""The `mlx-jina` command: argument parsing and dispatch for embed, convert, serve and info.

Each handler imports what it needs when it runs, so `mlx-jina --help` and usage errors
never import MLX. User errors exit with code 2 and one line.
"""

import argparse
import json
import os
import re
import sys
from dataclasses import fields
from pathlib import Path

from ._version import __version__
from .arg_values import byte_count, comma_list, positive_int, positive_seconds, seconds_or_zero
from .checkpoint import WEIGHT_DTYPES
from .closed_pipe import quiet_on_closed_pipe
from .corpus.cli import add_corpus_options, run_corpus
from .corpus.errors import ShardPoolError, exit_on
from .index.cli import add_index_commands
from .login_service.cli import add_service_command
from .server.durations import DEFAULT_KEEP_ALIVE, keep_alive_seconds, shown
from .server.limits import DEFAULT_MAX_LOADED
from .tasks import MIN_DIM, TASK_NAMES, TASKS

API_ONLY = [name for name in TASK_NAMES if name not in TASKS]  # the names that pick a prompt


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `mlx-jina embed: error: ... (see --help)`, exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def one_line(message: str) -> str:
    return "; ".join(line.strip() for line in str(message).splitlines() if line.strip())


def keep_alive_value(text: str) -> float:
    try:
        return keep_alive_seconds(text, "--keep-alive")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


MODEL_OPTIONS = [
    (("-m", "--model"), dict(required=True, help="model folder or Hugging Face repo id")),
    (("--revision",), dict(help="Hub branch, tag or commit to pin")),
]
WEIGHT_OPTIONS = [
    (("--bits",), dict(type=int, choices=(4, 8), help="quantize the weights")),
    (("--dtype",), dict(choices=WEIGHT_DTYPES, help="cast the weights (default: as stored)")),
]
EMBED_OPTIONS = [
    (("texts",), dict(nargs="*", metavar="TEXT", help="texts to embed")),
    (("-i", "--input"), dict(metavar="FILE", help="one text per line ('-' reads stdin); a "
                             '.jsonl file holds one JSON string or {"text": ...} object per line')),
    (("--jsonl",), dict(action="store_true", help="read the input as JSON lines")),
    (("--task",), dict(choices=TASK_NAMES, metavar="TASK",
                       help=f"adapter to use (needed for base repos): {', '.join(TASKS)}; or "
                       f"a Jina API name, which also picks the prompt: {', '.join(API_ONLY)}")),
    (("--prompt-name",), dict(choices=("query", "document"),
                              help="prompt to add (default: document)")),
    (("--dims", "--truncate-dim"), dict(dest="truncate_dim", type=positive_int, metavar="N",
                       help=f"Matryoshka size (encode's truncate_dim), {MIN_DIM} up to the "
                       "model's dimension")),
    (("--precision",), dict(default="float32",
                            help="float32 (default), float16, or a quantized output type")),
    (("--batch-size",), dict(type=positive_int, default=32, metavar="N",
                             help="inputs per forward pass (default: 32)")),
    (("--max-length",), dict(type=positive_int, metavar="N",
                             help="tokens per input; longer inputs are cut with a warning")),
    (("--split-special-tokens",), dict(action="store_true",
                                       help="tokenize special-token strings in the text (e.g. "
                                       "<|endoftext|>) as plain text; safer for untrusted text, "
                                       "differs from transformers")),
    (("-o", "--output"), dict(metavar="FILE", help="write the vectors to FILE instead of "
                              "stdout; its extension picks the format: .npy (one array), .json "
                              "(an array of arrays) or .jsonl (one array per line)")),
]  # fmt: skip
SERVE_MODEL_OPTIONS = [
    (("-m", "--model"), dict(action="append", metavar="MODEL",
                             help="model folder, Hugging Face repo id, or NAME=MODEL to serve it "
                             "as NAME; repeat to serve several (the first is the default and "
                             "loads at start, the others on their first request)")),
    (("--models",), dict(dest="models_file", metavar="FILE",
                         help='JSON file of models with their own settings: {"models": [{"name", '
                         '"source", "task", "multitask", "bits", "dtype", "revision", '
                         '"keep_alive"}]}')),
    (("--keep-alive",), dict(type=keep_alive_value, default=DEFAULT_KEEP_ALIVE,
                             metavar="DURATION",
                             help="how long an idle model stays loaded: 5m, 1h, 90s, 0 (unload "
                             "after each request) or -1 (always) (default: "
                             f"{shown(DEFAULT_KEEP_ALIVE)}); a request's keep_alive wins")),
    (("--max-loaded-models",), dict(type=positive_int, default=DEFAULT_MAX_LOADED, metavar="N",
                                    help="models loaded or loading at once; the least recently "
                                    "used idle one is unloaded to make room (default: "
                                    f"{DEFAULT_MAX_LOADED})")),
    (("--no-cached-models",), dict(dest="offer_cached", action="store_false",
                                   help="don't offer the Jina v5 models found in the Hugging "
                                   "Face cache")),
    (("--revision",), dict(help="Hub branch, tag or commit to pin")),
]
SERVE_OPTIONS = [
    (("--task",), dict(choices=TASK_NAMES, metavar="TASK",
                       help="adapter to load (a Jina API task name names "
                       "its adapter); with --multitask, the default for requests without one")),
    (("--multitask",), dict(action="store_true", help="serve every adapter the model has")),
    (("--host",), dict(default="127.0.0.1", help="address to bind (default: 127.0.0.1)")),
    (("--port",), dict(type=int, default=8080, help="port to bind (default: 8080)")),
    (("--uds",), dict(metavar="PATH", help="serve on this Unix socket (mode 0600) instead of "
                      "TCP; --host/--port are then unused")),
    (("--api-key",), dict(default=os.environ.get("MLX_JINA_API_KEY"),
                          help="require 'Authorization: Bearer KEY' (default: $MLX_JINA_API_KEY)")),
    (("--served-model-name",), dict(metavar="NAME", help="model id of the first -m model "
                                    "(default: the folder or repo name; -m NAME=MODEL names "
                                    "any)")),
    (("--allowed-hosts",), dict(type=comma_list, metavar="HOST,...",
                                help="Host header names accepted, '*' for any (default: "
                                "localhost, 127.0.0.1 and ::1 when bound to loopback, any "
                                "otherwise); guards against DNS rebinding")),
    (("--cors-origins",), dict(type=comma_list, default=(), metavar="ORIGIN,...",
                               help="web origins (e.g. http://localhost:3000) allowed to call "
                               "the API from a browser, '*' for any (default: none)")),
    (("--split-special-tokens",), dict(action="store_true",
                                       help="default for requests: tokenize special-token "
                                       "strings in the input as plain text (a request's "
                                       '"split_special_tokens" wins)')),
    (("--accept-token-ids",), dict(action="store_true",
                                   help="embed token-id inputs as this model's ids; off by "
                                   "default, since OpenAI clients send tiktoken ids")),
    (("--log-level",), dict(default="info", choices=("critical", "error", "warning", "info",
                                                     "debug"),
                            help="uvicorn's log level (default: info)")),
]  # fmt: skip
# unit of a server limit -> how its flag is parsed
LIMIT_TYPES = {
    "count": positive_int,
    "bytes": byte_count,
    "seconds": positive_seconds,
    "seconds or 0": seconds_or_zero,
}


def limit_options() -> list:
    """The serve flags of mlx_jina.server.limits.Limits: defaults and help read from there."""
    from .server.limits import Limits, help_text

    return [
        (("--" + f.name.replace("_", "-"),), dict(
            type=LIMIT_TYPES[f.metadata["unit"]], default=f.default,
            metavar="S" if "seconds" in f.metadata["unit"] else "N", help=help_text(f.name),
        ))
        for f in fields(Limits)
    ]  # fmt: skip


# `serve` option -> Limits field, for the options that are limits.
LIMITS = tuple(flags[0][2:].replace("-", "_") for flags, _ in limit_options())


def add_options(p: argparse.ArgumentParser, *tables: list) -> argparse.ArgumentParser:
    for table in tables:
        for flags, options in table:
            p.add_argument(*flags, **options)
    return p


class _Version(argparse.Action):
    """argparse's own version action rewraps its text; this prints lines as they are."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from .cpu_blas import describe  # no MLX import: --version stays instant

        print(f"mlx-jina {__version__}")
        if sys.platform.startswith("linux"):
            print(f"CPU BLAS: {describe()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="mlx-jina", description="Run Jina's jina-embeddings-v5-text models with MLX.")
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="print the version (and, on Linux, the CPU BLAS) and exit")
    subs = parser.add_subparsers(dest="command", metavar="{embed,convert,serve,info,index,"
                                 "search,mcp,service}",
                                 help="what to do; mlx-jina COMMAND --help tells more")
    subs.required = True
    commands = [
        ("embed", "embed texts; one JSON array per input on stdout", run_embed,
         (MODEL_OPTIONS, WEIGHT_OPTIONS, EMBED_OPTIONS)),
        ("serve", "OpenAI- and Jina-compatible embedding server", run_serve,
         (SERVE_MODEL_OPTIONS, WEIGHT_OPTIONS, SERVE_OPTIONS, limit_options())),
        ("info", "what a model folder or repo holds", run_info,
         (MODEL_OPTIONS, [(("--json",), dict(action="store_true", help="print one JSON object"))])),
    ]  # fmt: skip
    for name, help_text, handler, tables in commands:
        p = add_options(subs.add_parser(name, help=help_text), *tables)
        p.set_defaults(handler=handler, parser=p)
        if name == "embed":
            add_corpus_options(p)
    add_index_commands(subs, add_options)
    add_service_command(subs, add_options, build_parser, serve_adapter)
    # Parsed by the converter itself; listed here for --help.
    subs.add_parser("convert", help="convert and quantize a model to an MLX folder", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> None:
    with quiet_on_closed_pipe():
        run_command(sys.argv[1:] if argv is None else list(argv))


def run_command(argv: list[str]) -> None:
    if argv[:1] == ["convert"]:
        return run_convert(argv[1:])
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and not hasattr(args, "serve_options"):  # only `service install` takes them
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.serve_options = rest
    try:
        args.handler(args)
    except BrokenPipeError:
        raise
    except ShardPoolError as e:  # a distributed corpus job lost a rank: one line, exit 1
        exit_on(e, resume_hint(args))
    except (ValueError, OSError) as e:  # OSError: e.g. -o in a folder we can't write to
        args.parser.error(cli_words(one_line(e)))


def resume_hint(args: argparse.Namespace) -> str:
    """What a stopped corpus job can do next: resume, unless it read stdin."""
    if getattr(args, "input", None) in (None, "-"):
        return ("a job that reads stdin can't resume: run it again with --force, or save "
                "the input to a file first")  # fmt: skip
    return "finished shards are kept: run the same command to resume"


def cli_words(message: str) -> str:
    """The Python API's `task=...` as the flag the command line takes: `--task ...`."""
    message = re.sub(r"(?<![\w.-])task=(?=[\s.,;:)]|$)", "--task", message)
    return re.sub(r"(?<![\w.-])task=", "--task ", message)


def run_embed(args: argparse.Namespace) -> None:
    from .encoding.textio import format_rows, output_format, read_texts, save_rows

    if args.out_dir:  # a corpus job: streamed, sharded, resumable
        args.task, args.prompt_name = task_and_prompt(args.task, args.prompt_name)
        return run_corpus(args)
    if args.output:
        reads = Path(args.input).resolve() if args.input not in (None, "-") else None
        if Path(args.output).resolve() == reads:
            raise ValueError(f"-o {args.output} is the input file; write to another file")
        output_format(args.output)
    task, prompt_name = task_and_prompt(args.task, args.prompt_name)
    texts = read_texts(args.texts, args.input, args.jsonl, args.text_field)
    from .loading import load

    model = load(args.model, task=task, bits=args.bits, dtype=args.dtype, revision=args.revision)
    emb = model.encode(
        texts,
        prompt_name=prompt_name,
        truncate_dim=args.truncate_dim,
        precision=args.precision,
        batch_size=args.batch_size,
        max_length=args.max_length,
        split_special_tokens=args.split_special_tokens,
    )
    if args.output:
        what = save_rows(Path(args.output), emb)
        print(f"[INFO] Saved {emb.shape[0]} x {emb.shape[1]} {emb.dtype} to {args.output} ({what})",
              file=sys.stderr)  # fmt: skip
        return
    sys.stdout.write(format_rows(emb))


def task_and_prompt(task: str | None, prompt_name: str | None) -> tuple[str | None, str | None]:
    """--task as (adapter, prompt name): a Jina API name (tasks.API_TASKS) picks the prompt
    too, and an explicit --prompt-name must agree with it."""
    if task is None:
        return None, prompt_name
    from .tasks import parse_task

    adapter, implied = parse_task(task)
    if implied and prompt_name and prompt_name != implied:
        raise ValueError(
            f"--task {task} means --prompt-name {implied}, not {prompt_name}; pass --task "
            f"{adapter} --prompt-name {prompt_name}, or drop --prompt-name"
        )
    return adapter, prompt_name or implied


def run_convert(argv: list[str]) -> None:
    from .conversion.options import configure_parser

    parser = configure_parser(
        Parser(prog="mlx-jina convert", description="Convert jina-embeddings-v5-text to MLX.")
    )
    args = parser.parse_args(argv)
    from .conversion.pipeline import convert

    try:
        convert(**vars(args))
    except (ValueError, FileNotFoundError) as e:
        parser.error(one_line(e))


def serve_adapter(task: str | None) -> str | None:
    """--task for the server: the adapter (a name that asks for queries is refused)."""
    from .server.model_specs import serving_adapter

    return serving_adapter(task)


def run_serve(args: argparse.Namespace) -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        args.parser.error("the server needs its extra: pip install 'mlx-jina[server]'")
    from .server.limits import Limits
    from .server import serve

    limits = Limits(**{name: getattr(args, name) for name in LIMITS})
    limits.request_timeout = limits.request_timeout or None  # 0: no limit
    args.task = serve_adapter(args.task)
    if not args.model and not args.models_file:
        args.parser.error("give a model to serve: -m MODEL (repeat for several) or --models FILE")
    serve(
        args.model or [],
        task=args.task,
        multitask=args.multitask,
        bits=args.bits,
        dtype=args.dtype,
        revision=args.revision,
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        model_name=args.served_model_name,
        limits=limits,
        allowed_hosts=args.allowed_hosts,
        cors_origins=args.cors_origins,
        split_special_tokens=args.split_special_tokens,
        accept_token_ids=args.accept_token_ids,
        log_level=args.log_level,
        models_file=args.models_file,
        keep_alive=args.keep_alive,
        max_loaded_models=args.max_loaded_models,
        offer_cached=args.offer_cached,
        uds=args.uds,
    )


def run_info(args: argparse.Namespace) -> None:
    from .checkpoint.facts import model_facts

    facts = model_facts(args.model, args.revision)
    print(json.dumps(facts, indent=2) if args.json else info_table(facts))


def info_table(facts: dict) -> str:
    memory = f"{human_size(facts['memory_bytes'])} of weights for one task"
    if len(facts["tasks"]) > 1:
        memory += f", {human_size(facts['multitask_memory_bytes'])} with --multitask"
    rows = [
        ("model", facts["source"]),
        ("folder", facts["folder"]),
        ("layout", facts["layout"]),
        ("backbone", f"{facts['backbone']} ({facts['attention']} attention)"),
        ("tasks", ", ".join(facts["tasks"]) or "unknown (a merged model; pass the task)"),
        ("dim", f"{facts['dim']} (Matryoshka {facts['matryoshka_dims'][0]} to {facts['dim']})"),
        ("context", f"{facts['context']} tokens"),
        ("layers", facts["layers"]),
        ("weights dtype", ", ".join(facts["dtypes"])),
        ("quantization", facts["quantization"]),
        ("memory", memory),
        ("files", ""),
    ]
    width = max(len(k) for k, _ in rows)
    rows += [(f"  {name}", human_size(size)) for name, size in facts["files"].items()]
    return "\n".join(f"{k + ':':<{width + 1}} {v}".rstrip() for k, v in rows)


def human_size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n} B"
