"""The `mlx-jina` command: embed, convert, serve and info.

Heavy modules (mlx, the loader, the server) are imported inside each handler, so
`mlx-jina --help` and usage errors stay fast. User errors exit with code 2 and one line.
"""

import argparse
import json
import math
import os
import sys
from pathlib import Path

from .tasks import TASKS, matryoshka_dims



class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `mlx-jina embed: error: ... (see --help)`, exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def byte_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of bytes (0 or more)")
    return value


def seconds(text: str, zero_ok: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (0 <= value if zero_ok else 0 < value) or value == float("inf") or value != value:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a {'' if zero_ok else 'positive '}number of seconds"
        )
    return value


def positive_float(text: str) -> float:
    return seconds(text)


def seconds_or_zero(text: str) -> float:
    return seconds(text, zero_ok=True)


def comma_list(text: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    if not items:
        raise argparse.ArgumentTypeError(f"{text!r} names nothing; give a comma-separated list")
    return items


def one_line(message: str) -> str:
    return "; ".join(line.strip() for line in str(message).splitlines() if line.strip())


def add_model_args(p: argparse.ArgumentParser, quantized: bool = True) -> None:
    p.add_argument("-m", "--model", required=True, help="model folder or Hugging Face repo id")
    p.add_argument("--revision", help="Hub branch, tag or commit to pin")
    if quantized:
        p.add_argument("--bits", type=int, choices=(4, 8), help="quantize the weights")
        p.add_argument(
            "--dtype",
            choices=("float16", "bfloat16", "float32"),
            help="cast the weights (default: as stored)",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="mlx-jina",
        description="Run Jina's jina-embeddings-v5-text models with MLX.",
    )
    subs = parser.add_subparsers(dest="command", metavar="{embed,convert,serve,info}")
    subs.required = True

    p = subs.add_parser("embed", help="embed texts; one JSON array per input on stdout")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts to embed")
    p.add_argument(
        "-i",
        "--input",
        metavar="FILE",
        help="one text per line ('-' reads stdin); a .jsonl file holds one JSON "
        'string or {"text": ...} object per line',
    )
    p.add_argument("--jsonl", action="store_true", help="read the input as JSON lines")
    add_model_args(p)
    p.add_argument("--task", choices=TASKS, help="adapter to use (needed for base repos)")
    p.add_argument(
        "--prompt-name", choices=("query", "document"), help="prompt to add (default: document)"
    )
    p.add_argument(
        "--dims",
        dest="truncate_dim",
        type=positive_int,
        metavar="N",
        help="Matryoshka size (encode's truncate_dim), 32 up to the model's dimension",
    )
    p.add_argument(
        "--precision",
        default="float32",
        help="float32 (default), float16, or a quantized output type",
    )
    p.add_argument("--batch-size", type=positive_int, default=32, metavar="N")
    p.add_argument(
        "--max-length",
        type=positive_int,
        metavar="N",
        help="tokens per input; longer inputs are cut with a warning",
    )
    p.add_argument(
        "--split-special-tokens",
        action="store_true",
        help="tokenize special-token strings in the text (e.g. <|endoftext|>) as plain text; "
        "safer for untrusted text, differs from transformers",
    )
    p.add_argument("-o", "--output", metavar="FILE.npy", help="save one .npy array instead")
    p.set_defaults(handler=run_embed, parser=p)

    # Parsed by the converter itself; listed here for --help.
    subs.add_parser("convert", help="convert and quantize a model to an MLX folder", add_help=False)

    p = subs.add_parser("serve", help="OpenAI- and Jina-compatible embedding server")
    add_model_args(p)
    p.add_argument(
        "--task",
        choices=TASKS,
        help="adapter to load; with --multitask, the default for requests without one",
    )
    p.add_argument("--multitask", action="store_true", help="serve every adapter the model has")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to bind (default: 8080)")
    p.add_argument(
        "--api-key",
        default=os.environ.get("MLX_JINA_API_KEY"),
        help="require 'Authorization: Bearer KEY' (default: $MLX_JINA_API_KEY)",
    )
    p.add_argument(
        "--served-model-name",
        metavar="NAME",
        help="model id in responses (default: the folder or repo name)",
    )
    p.add_argument(
        "--max-batch-tokens",
        type=positive_int,
        default=16384,
        metavar="N",
        help="tokens per worker batch and forward pass (default: 16384)",
    )
    p.add_argument(
        "--max-queue",
        type=positive_int,
        default=256,
        metavar="N",
        help="requests waiting before 429 (default: 256)",
    )
    p.add_argument(
        "--max-inputs",
        type=positive_int,
        default=2048,
        metavar="N",
        help="inputs per request (default: 2048)",
    )
    p.add_argument(
        "--max-body-bytes",
        type=positive_int,
        default=16 * 2**20,
        metavar="N",
        help="request body size (default: 16 MiB)",
    )
    p.add_argument(
        "--read-timeout",
        type=positive_float,
        default=30.0,
        metavar="S",
        help="seconds a client has to send a request's headers, and again its body; "
        "slower requests get 408 (default: 30)",
    )
    p.add_argument(
        "--request-timeout",
        type=seconds_or_zero,
        default=300.0,
        metavar="S",
        help="seconds of work per request; after that its remaining inputs are dropped "
        "and it gets 504; 0 for no limit (default: 300)",
    )
    p.add_argument(
        "--cache-limit",
        type=byte_count,
        default=256 * 2**20,
        metavar="BYTES",
        help="freed GPU/CPU buffers MLX keeps for reuse; emptied after 1 s idle "
        "(default: 256 MiB)",
    )
    p.add_argument(
        "--max-connections",
        type=positive_int,
        default=128,
        metavar="N",
        help="open connections; more get 503 (default: 128)",
    )
    p.add_argument(
        "--allowed-hosts",
        type=comma_list,
        metavar="HOST,...",
        help="Host header names accepted, '*' for any (default: localhost, 127.0.0.1 and ::1 "
        "when bound to loopback, any otherwise); guards against DNS rebinding",
    )
    p.add_argument(
        "--cors-origins",
        type=comma_list,
        default=(),
        metavar="ORIGIN,...",
        help="web origins (e.g. http://localhost:3000) allowed to call the API from a "
        "browser, '*' for any (default: none)",
    )
    p.add_argument(
        "--split-special-tokens",
        action="store_true",
        help="default for requests: tokenize special-token strings in the input as plain "
        'text (a request\'s "split_special_tokens" wins)',
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=("critical", "error", "warning", "info", "debug"),
        help="uvicorn's log level (default: info)",
    )
    p.set_defaults(handler=run_serve, parser=p)

    p = subs.add_parser("info", help="what a model folder or repo holds")
    add_model_args(p, quantized=False)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=run_info, parser=p)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["convert"]:
        return run_convert(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (ValueError, FileNotFoundError) as e:
        args.parser.error(one_line(e))


# ---------------------------------------------------------------------------
# embed


def read_texts(args: argparse.Namespace) -> list[str]:
    parser = args.parser
    if args.texts and args.input:
        parser.error("pass texts as arguments or with -i, not both")
    if args.texts:
        return args.texts
    if args.input is None and sys.stdin.isatty():
        parser.error("no input: pass texts as arguments, -i FILE, or pipe them on stdin")
    if args.input in (None, "-"):
        lines, name = sys.stdin.read().splitlines(), "stdin"
    else:
        path = Path(args.input)
        if not path.is_file():
            parser.error(f"no input file {path}")
        lines, name = path.read_text(encoding="utf-8").splitlines(), str(path)
    if not (args.jsonl or name.endswith(".jsonl")):
        return lines
    texts = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            parser.error(f"line {n} of {name} is not JSON; drop --jsonl for plain text")
        if isinstance(item, dict):
            item = item.get("text")
        if not isinstance(item, str):
            parser.error(f'line {n} of {name} is not a JSON string or {{"text": ...}} object')
        texts.append(item)
    return texts


def format_row(row) -> str:
    # numpy's str() of a float32 is the shortest text that reads back the same value.
    return "[" + ",".join(str(x) for x in row) + "]"


def run_embed(args: argparse.Namespace) -> None:
    if args.output and args.input not in (None, "-"):
        if Path(args.output).resolve() == Path(args.input).resolve():
            args.parser.error(f"-o {args.output} is the input file; write to another file")
    texts = read_texts(args)
    import numpy as np

    from .loader import load

    model = load(
        args.model, task=args.task, bits=args.bits, dtype=args.dtype, revision=args.revision
    )
    emb = model.encode(
        texts,
        prompt_name=args.prompt_name,
        truncate_dim=args.truncate_dim,
        precision=args.precision,
        batch_size=args.batch_size,
        max_length=args.max_length,
        split_special_tokens=args.split_special_tokens,
    )
    if args.output:
        from .atomic import replacing_file

        out = Path(args.output)
        with replacing_file(out) as f:  # the named file exactly, whole or not at all
            np.save(f, emb)
        print(f"[INFO] Saved {emb.shape[0]} x {emb.shape[1]} {emb.dtype} to {out}", file=sys.stderr)
        return
    sys.stdout.write("".join(format_row(row) + "\n" for row in emb))


# ---------------------------------------------------------------------------
# convert


def run_convert(argv: list[str]) -> None:
    from .convert import configure_parser, convert

    parser = configure_parser(
        Parser(prog="mlx-jina convert", description="Convert jina-embeddings-v5-text to MLX.")
    )
    args = parser.parse_args(argv)
    try:
        convert(**vars(args))
    except (ValueError, FileNotFoundError) as e:
        parser.error(one_line(e))


# ---------------------------------------------------------------------------
# serve


def run_serve(args: argparse.Namespace) -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        args.parser.error("the server needs its extra: pip install 'mlx-jina[server]'")
    from .server import Limits, serve

    limits = Limits(
        max_inputs=args.max_inputs,
        max_body_bytes=args.max_body_bytes,
        max_queue=args.max_queue,
        max_batch_tokens=args.max_batch_tokens,
        read_timeout=args.read_timeout,
        request_timeout=args.request_timeout or None,
        max_connections=args.max_connections,
        cache_limit=args.cache_limit,
    )
    serve(
        args.model,
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
        log_level=args.log_level,
    )


# ---------------------------------------------------------------------------
# info


def tensor_bytes(tensors: dict) -> int:
    """Bytes of data the headers' tensors hold (`weights.TensorInfo` values)."""
    from .weights import DTYPE_SIZES

    return sum(math.prod(t.shape) * DTYPE_SIZES[t.dtype] for t in tensors.values())


def human_size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n} B"


def model_facts(source: str, revision: str | None = None) -> dict:
    """What a folder or repo holds, from its JSON files and the weight headers alone.

    The checkpoint is checked as `load` checks it, so a broken one fails the same way.
    """
    from . import hub
    from .loader import check_checkpoint, inspect_folder
    from .models.base import sanitize
    from .weights import read_header, read_headers

    folder = hub.resolve(source, revision=revision, all_tasks=True)
    found = inspect_folder(folder, name=source)
    config = found.config
    tensors = read_headers(folder, found.weight_files)
    where = ", ".join(str(folder / f) for f in found.weight_files)
    module, args, _ = check_checkpoint(config, sanitize(tensors), where)
    backbone = module.__name__.rsplit(".", 1)[-1]
    quant = config.get("quantization") or config.get("quantization_config")
    if quant:
        quantization = f"{quant.get('bits')}-bit, group size {quant.get('group_size')}"
    elif any(k.endswith(".scales") for k in tensors):
        quantization = "quantized (no quantization block in config.json)"
    else:
        quantization = "none"
    adapters = {
        task: path / "adapter_model.safetensors"
        for task, path in found.adapters.items()
        if (path / "adapter_model.safetensors").exists()
    }
    dim = args.hidden_size
    weights = tensor_bytes({k: v for k, v in tensors.items() if not k.startswith("lm_head.")})
    return {
        "source": source,
        "folder": str(folder),
        "layout": found.layout,
        "backbone": backbone,
        "attention": "causal" if backbone == "qwen3" else "bidirectional",
        "tasks": list(found.tasks),
        "dim": dim,
        "matryoshka_dims": matryoshka_dims(dim),
        "context": args.max_position_embeddings,
        "layers": args.num_hidden_layers,
        "dtypes": sorted({t.dtype for t in tensors.values()}),
        "quantization": quantization,
        "files": {
            **{name: (folder / name).stat().st_size for name in found.weight_files},
            **{str(p.relative_to(folder)): p.stat().st_size for p in adapters.values()},
        },
        # One task's adapter is merged into the weights; --multitask keeps all unmerged.
        "memory_bytes": weights,
        "multitask_memory_bytes": weights
        + sum(tensor_bytes(read_header(p)) for p in adapters.values()),
    }


def run_info(args: argparse.Namespace) -> None:
    facts = model_facts(args.model, args.revision)
    if args.json:
        print(json.dumps(facts, indent=2))
        return
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
        (
            "memory",
            f"{human_size(facts['memory_bytes'])} of weights for one task"
            + (
                f", {human_size(facts['multitask_memory_bytes'])} with --multitask"
                if len(facts["tasks"]) > 1
                else ""
            ),
        ),
        ("files", ""),
    ]
    rows += [(f"  {name}", human_size(size)) for name, size in facts["files"].items()]
    width = max(len(k) for k, _ in rows[: -len(facts["files"]) - 1])
    print("\n".join(f"{k + ':':<{width + 1}} {v}".rstrip() for k, v in rows))
