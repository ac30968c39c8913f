"""Convert a jina-embeddings-v5-text checkpoint to a per-task MLX folder, optionally quantized.

Same as `mlx-jina convert` and the top-level `convert.py`. The output follows Jina's
per-task -mlx layout: config.json, tokenizer.json, config_sentence_transformers.json and
`model.safetensors` or `model-{4,8}bit.safetensors`, plus a model card.
"""

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from . import atomic, hub, quality
from .loader import DTYPES, inspect_folder, load, read_json
from .tasks import TASKS, matryoshka_dims
from .quantize import check_settings, quantization_block, quantize_model
from .weights import FLOAT_FILE, quantized_file

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
QUALITY_FILE = "quantization_quality.json"
OUTPUT_FILES = {"config.json", "config_sentence_transformers.json", "README.md"}
OUTPUT_FILES |= {QUALITY_FILE, *TOKENIZER_FILES}
IGNORED = {".DS_Store"}  # macOS Finder metadata, not the user's files


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
        "--dtype", choices=tuple(DTYPES), help="Float dtype (default: as stored)."
    )
    p.add_argument("--revision", help="Hub branch, tag or commit of --hf-path.")
    p.add_argument(
        "--upload-repo", help="Upload the result to this Hub repo (ORG/NAME)."
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="Replace an existing --mlx-path that holds an earlier mlx-jina output.",
    )
    return p


def convert(
    hf_path: str,
    mlx_path: str = "mlx_model",
    task: str | None = None,
    quantize: bool = False,
    q_bits: int = 4,
    q_group_size: int = 64,
    dtype: str | None = None,
    revision: str | None = None,
    upload_repo: str | None = None,
    force: bool = False,
    *,
    api: Any = None,
) -> Path:
    """Convert a checkpoint to an MLX folder for one task (or every task).

    Args:
        hf_path: A local folder or Hub repo id: the base repo (the task's LoRA is merged in
            float32 before quantizing) or an already merged per-task repo.
        mlx_path: The output folder: new or empty unless `force`, never overlapping
            the source. It is written beside, then swapped in as a whole.
        task: The adapter to merge, or "all" for one subfolder per task under `mlx_path`.
        quantize: Write `model-{q_bits}bit.safetensors` instead of `model.safetensors`,
            and measure quantized against float embeddings on a built-in set.
        q_bits: 4 or 8.
        q_group_size: MLX affine group size (32, 64 or 128); layers whose input size it does
            not divide stay float.
        dtype: `float16`, `bfloat16` or `float32` for the float weights (and the scales);
            None keeps the stored dtype.
        revision: A Hub branch, tag or commit of `hf_path`.
        upload_repo: Upload to this Hub repo (with "all", one repo per task: NAME-<task>).
        force: Replace an existing output folder that holds an earlier mlx-jina output
            (one task, or task subfolders); other folders are refused.
        api: A `huggingface_hub.HfApi`-like object for the upload (default: a new HfApi).

    Returns:
        The folder written (for task="all", the folder holding the task subfolders).
    """
    if quantize:
        check_settings(q_bits, q_group_size)
    root = _destination(mlx_path)
    # Check before downloading: a Hub id lives in its cache folder.
    _refuse_overlap(_source_folder(hf_path), root)
    _refuse_cwd(root)
    _check_replaceable(root, force)
    folder = hub.resolve(hf_path, revision=revision, task=task, all_tasks=task == "all")
    _refuse_overlap(folder, root)
    tasks = [task]
    if task == "all":
        tasks = list(inspect_folder(folder).adapters)
        if not tasks:
            raise ValueError(
                f"{hf_path} has no adapters/ folder, so --task all has nothing to convert. "
                "Use the base repo, or pass its single task."
            )
    # In the Hub cache, the snapshot folder is named after the commit.
    commit = folder.name if folder.parent.name == "snapshots" else revision
    subs = {t: t if task == "all" else "" for t in tasks}
    repos = {t: upload_repo for t in tasks}
    if task == "all" and upload_repo:
        repos = {t: f"{upload_repo}-{t}" for t in tasks}
    written = {}
    # All tasks go into one new folder, swapped in only when every one succeeded.
    with atomic.replacing(root.resolve()) as new:
        for t, sub in subs.items():
            written[t] = _convert_one(
                folder,
                new / sub,
                t,
                quantize,
                q_bits,
                q_group_size,
                dtype,
                source=str(hf_path),
                revision=commit,
                card_name=repos[t] or (root / sub).name,
            )
    for t, sub in subs.items():
        print(f"[INFO] Wrote {root / sub / written[t]}")
    for t, sub in subs.items():
        if repos[t]:
            upload(root / sub, repos[t], api)
    return root


def _destination(mlx_path: str) -> Path:
    """`mlx_path` as a Path, with `~` expanded; refuse paths that cannot be a folder."""
    if not str(mlx_path).strip():
        raise ValueError("--mlx-path is empty. Pass a folder, such as mlx_model.")
    root = Path(mlx_path).expanduser()
    for p in (root, *root.parents):
        if p.exists() and not p.is_dir():
            where = "" if p == root else f": {p}"
            raise ValueError(
                f"--mlx-path {root}{where} is a file, not a folder. "
                "Pass a folder path, or move the file away."
            )
    return root


def _source_folder(hf_path: str) -> Path:
    """Where the source lives before any download: its folder, or the Hub cache's."""
    if hub.is_local(hf_path):
        return Path(hf_path).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / f"models--{hf_path.replace('/', '--')}"


def _refuse_overlap(source: Path, root: Path) -> None:
    """Refuse an output that is, holds or is inside the source: the swap deletes it."""
    src, dst = source.resolve(), root.resolve()
    # A Hub snapshot's files are links into ../../blobs: check where each really lives.
    files = [*source.iterdir(), *source.glob("adapters/*/*")] if source.is_dir() else []
    if dst == src or src in dst.parents:
        relation = "is" if dst == src else "is inside"
    elif any(dst == f or dst in f.parents for f in [src, *map(Path.resolve, files)]):
        relation = "contains"
    else:
        return
    raise ValueError(
        f"--mlx-path {root} {relation} the source folder {src}, so converting would "
        f"overwrite the checkpoint it reads. Choose another --mlx-path, outside {src}."
    )


def _refuse_cwd(root: Path) -> None:
    cwd = Path.cwd().resolve()
    if root.resolve() in (cwd, *cwd.parents):
        raise ValueError(
            f"--mlx-path {root} is or contains the current directory, and convert "
            "replaces the output folder as a whole. Pass a new folder, e.g. mlx_model."
        )


def _check_replaceable(root: Path, force: bool) -> None:
    """Refuse a non-empty `root` without `force`, and all but our output with it."""
    if not root.is_dir() or not [p for p in root.iterdir() if p.name not in IGNORED]:
        return
    if not force:
        raise ValueError(
            f"{root} already exists and is not empty. Pass --force to replace it."
        )
    foreign = _foreign_entries(root)
    if foreign:
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        raise ValueError(
            f"{root} is not an mlx-jina output (found {', '.join(foreign[:5])}{more}), "
            "and --force replaces the whole folder, so it only replaces an empty "
            "folder or an earlier mlx-jina output. Move those away, or choose another "
            "--mlx-path."
        )


def _foreign_entries(folder: Path) -> list[str]:
    """What in `folder` mlx-jina did not write: [] for an earlier output."""
    names = sorted(p.name for p in folder.iterdir() if p.name not in IGNORED)
    if _is_output(folder):
        return [n for n in names if not _is_output_file(folder / n)]
    found = []
    for n in names:  # --task all: one output per task subfolder
        if n in TASKS and _is_output(folder / n):
            found += [f"{n}/{m}" for m in _foreign_entries(folder / n)]
        else:
            found.append(n)
    return found


def _is_output(folder: Path) -> bool:
    try:
        return isinstance(read_json(folder / "config.json").get("mlx_jina"), dict)
    except (OSError, ValueError, AttributeError):
        return False


def _is_output_file(path: Path) -> bool:
    name = path.name
    ours = name in OUTPUT_FILES or (
        name.startswith("model") and name.endswith(".safetensors")
    )
    return ours and path.is_file()


def _convert_one(
    folder: Path,
    dst: Path,
    task: str | None,
    quantize: bool,
    bits: int,
    group_size: int,
    dtype: str | None,
    *,
    source: str,
    revision: str | None,
    card_name: str,
) -> str:
    """Write one task's folder `dst`; return the weight file's name."""
    embedder = load(folder, task=task, dtype=dtype)
    model = embedder.model
    if any(
        isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding))
        for _, m in model.named_modules()
    ):
        raise ValueError(f"{source} is already quantized; convert from float weights.")
    float_name = str(model.norm.weight.dtype).removeprefix("mlx.core.")
    report = None
    if quantize:
        check_settings(bits, group_size, model.args.hidden_size)
        print(f"[INFO] Embedding the quality set with {float_name} weights")
        reference = quality.embed_set(embedder)
        print(f"[INFO] Quantizing to {bits} bits, group size {group_size}")
        for path in quantize_model(model, bits, group_size):
            print(
                f"[INFO] {path} stays {float_name}: input size not a multiple of {group_size}"
            )
        report = quality.compare(reference, quality.embed_set(embedder))
        report.update(
            weights=f"{bits}-bit, group {group_size}",
            reference=f"{float_name} weights of the same task",
        )
        print("[INFO] Quantized vs float:\n" + quality.markdown_table([report]))

    dst.mkdir(exist_ok=True)
    weight_file = quantized_file(bits) if quantize else FLOAT_FILE
    # Jina's -mlx files prefix every key with "model."; the loader strips it.
    weights = {f"model.{k}": v for k, v in tree_flatten(model.parameters())}
    mx.save_safetensors(str(dst / weight_file), weights, metadata={"format": "mlx"})

    config = read_json(folder / "config.json")
    for key in ("auto_map", "task_names", "quantization", "quantization_config"):
        config.pop(key, None)
    for key in (
        "dtype",
        "torch_dtype",
    ):  # the base config says float32 for 16-bit files
        if key in config:
            config[key] = float_name
    if quantize:
        config["quantization"] = config["quantization_config"] = quantization_block(
            bits, group_size
        )
    from . import __version__  # here: mlx_jina/__init__.py imports this module

    dim = model.args.hidden_size
    config["mlx_jina"] = {
        "version": __version__,
        "source": source,
        "revision": revision,
        "task": embedder.task,
        "prompts": embedder.prompts,
        "dims": matryoshka_dims(dim),
        "max_length": embedder.max_length,
        "weights": weight_file,
    }
    (dst / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for name in TOKENIZER_FILES:
        if (folder / name).exists():
            shutil.copyfile(folder / name, dst / name)
    st = folder / "config_sentence_transformers.json"
    if st.exists():
        shutil.copyfile(st, dst / st.name)
    else:
        st_config = {"prompts": embedder.prompts, "default_prompt_name": "document"}
        (dst / st.name).write_text(json.dumps(st_config, indent=2) + "\n")
    if report:
        (dst / QUALITY_FILE).write_text(json.dumps(report, indent=2) + "\n")
    (dst / "README.md").write_text(model_card(config["mlx_jina"], report, card_name))
    return weight_file


def model_card(info: dict, report: dict | None, name: str) -> str:
    """A short README.md: what the folder holds, how to load it, quality, license."""
    source = info["source"]
    link = (
        f"`{source}`"
        if hub.is_local(source)
        else f"[{source}](https://huggingface.co/{source})"
    )
    weights = report["weights"] if report else "float"
    lines = [
        "---",
        "license: cc-by-nc-4.0",
        "library_name: mlx",
        "pipeline_tag: feature-extraction",
        "tags: [mlx, mlx-jina, sentence-similarity]",
        "---",
        "",
        f"# {name}",
        "",
        f"{link} for the `{info['task']}` task, converted to MLX by mlx-jina "
        f"{info['version']} (source revision {info['revision'] or 'unknown'}). Weights: "
        f"{weights}; a base repo's LoRA adapter is merged in float32 before quantizing.",
        "",
        "```python",
        "import mlx_jina",
        "",
        f'model = mlx_jina.load("{name}")',
        'vectors = model.encode_query(["Which planet is known as the Red Planet?"])',
        "```",
        "",
        f"Prompts: {json.dumps(info['prompts'], ensure_ascii=False)}. Matryoshka sizes: "
        f"{', '.join(map(str, info['dims']))}. Context: {info['max_length']} tokens.",
        "",
    ]
    if report:
        lines += [
            "## Quantization quality",
            "",
            f"Measured by `convert` on its built-in set ({report['texts']} texts in "
            f"{len(quality.LANGUAGES)} languages, short queries to ~2K-token passages):",
            "",
            quality.markdown_table([report]),
            "",
        ]
    lines += [
        "## License",
        "",
        "The weights are Jina AI's and licensed under CC BY-NC 4.0 (non-commercial use only); "
        "see the original model card. The conversion code (mlx-jina) is Apache-2.0.",
        "",
    ]
    return "\n".join(lines)


def upload(folder: Path, repo: str, api: Any = None) -> None:
    """Create `repo` on the Hub if needed and upload `folder` to it."""
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    api.create_repo(repo_id=repo, exist_ok=True)
    api.upload_folder(
        folder_path=str(folder), repo_id=repo, commit_message="Upload from mlx-jina"
    )
    print(f"[INFO] Uploaded {folder} to https://huggingface.co/{repo}")


def main(argv: list[str] | None = None) -> None:
    """Parse `argv` (default: sys.argv) and convert; user errors exit with one line."""
    parser = configure_parser()
    args = parser.parse_args(argv)
    try:
        convert(**vars(args))
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))
