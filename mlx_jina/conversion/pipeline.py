"""convert(): a jina-embeddings-v5-text checkpoint to per-task MLX folders, optionally
quantized. Same as `mlx-jina convert` and the top-level `convert.py`.

The output follows Jina's per-task -mlx layout: config.json, tokenizer.json,
config_sentence_transformers.json and `model.safetensors` or `model-{4,8}bit.safetensors`,
plus a model card. A base repo's adapter is merged in float32, then quantized. The
folder is also one MLX Swift's MLXEmbedders loads as it is (a small, Qwen3 model):
one weight file, config.json with the backbone's model_type and flat keys, and
1_Pooling/config.json (folder_config.py). `format="sentence-transformers"` writes a
sentence-transformers folder instead (st_folder.py).
"""

from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from .. import atomic
from ..checkpoint import hub
from ..checkpoint.folder import inspect_folder
from ..loading import load
from ..checkpoint.quantization import (
    Quantization,
    check_settings,
    quantize_model,
    resolve_quantization,
)
from ..checkpoint.safetensors import read_json
from ..checkpoint.weights import FLOAT_FILE, quantized_file, read_headers
from ..models import detect_backbone
from ..models.base import sanitize
from ..encoding.embedder import Embedder
from ..tasks import matryoshka_dims
from . import quality
from .card import model_card
from .st_folder import write_st_folder
from .destination import (
    QUALITY_FILE,
    check_destination,
    check_replaceable,
    destination_lock,
    refuse_overlap,
)
from .folder_config import portable_config, quantization_config, write_common_files, write_json

FORMATS = ("mlx", "swift", "sentence-transformers")


def convert(
    hf_path: str,
    mlx_path: str = "mlx_model",
    task: str | None = None,
    quantize: bool = False,
    q_bits: int | None = None,
    q_group_size: int | None = None,
    dtype: str | None = None,
    revision: str | None = None,
    upload_repo: str | None = None,
    force: bool = False,
    q_mode: str | None = None,
    q_recipe: str | None = None,
    sweep: bool = False,
    sweep_json: str | None = None,
    *,
    format: str = "mlx",
    api: Any = None,
) -> Path | dict:
    """Convert a checkpoint to an MLX folder for one task (or every task).

    Args:
        hf_path: A local folder or Hub repo id: the base repo (the task's LoRA is merged in
            float32 before quantizing) or an already merged per-task repo.
        mlx_path: The output folder: new or empty unless `force`, never overlapping
            the source. It is written beside, then swapped in as a whole.
        task: The adapter to merge, or "all" for one subfolder per task under `mlx_path`.
        quantize: Write quantized weights, measured against float on a built-in set.
            Implied by any `q_*` setting.
        q_bits, q_group_size, q_mode, q_recipe: as `load(bits=, group_size=, mode=,
            recipe=)`: affine 1, 2, 3, 4 (default), 5, 6 or 8 bits in groups of 32, 64
            (default) or 128; mxfp4, mxfp8 or nvfp4; or a mixed-precision recipe (layers
            whose input size the group size does not divide stay float).
        dtype: `float16`, `bfloat16` or `float32` (weights and scales); None: as stored.
        revision: A Hub branch, tag or commit of `hf_path`.
        upload_repo: Upload to this Hub repo (with "all", one repo per task: NAME-<task>).
        force: Replace an output folder that holds an earlier mlx-jina output only.
        format: "mlx" (the default, which MLX Swift's MLXEmbedders also loads for small),
            "swift" (the same folder, refused for a model MLXEmbedders can't run: nano), or
            "sentence-transformers" (float weights, loads with no remote code).
        sweep, sweep_json: Write no folder: measure every quantization choice against the
            float model, print the table, return the report (and write it as JSON).
        api: A `huggingface_hub.HfApi`-like object for the upload (default: a new HfApi).

    Returns the folder written (for task="all", the one holding the task subfolders), or
    with `sweep`, the sweep's report.
    """
    quant = resolve_quantization(q_bits, q_group_size, q_mode, q_recipe)
    if quantize and quant is None:
        quant = resolve_quantization(mode="affine")
    check_format(format, quant is not None)
    if sweep or sweep_json is not None:
        return sweep_only(hf_path, task, dtype, revision, sweep_json, sweep, quant, upload_repo)
    root = check_destination(hf_path, mlx_path)
    with destination_lock(root):
        check_replaceable(root, force)
        folder = hub.resolve(hf_path, revision=revision, task=task, all_tasks=task == "all")
        refuse_overlap(folder, root)  # where the download really lives
        write_tasks(root, folder, hf_path, task, dtype, quant, revision, upload_repo, format, api)
    return root


def sweep_only(hf_path, task, dtype, revision, sweep_json, sweep, quant, upload_repo) -> dict:
    """`--sweep`: every quantization choice measured, no folder written."""
    if not sweep:
        raise ValueError("--sweep-json only goes with --sweep.")
    if quant is not None or upload_repo:
        raise ValueError(
            "--sweep measures every quantization choice and writes no model folder; "
            "drop -q/--q-* and --upload-repo, or drop --sweep."
        )
    if task == "all":
        raise ValueError("--sweep measures one task; pass --task retrieval (or another one).")
    from .sweep import run_sweep

    return run_sweep(hf_path, task, dtype=dtype, revision=revision, json_path=sweep_json)


def write_tasks(root: Path, folder: Path, hf_path: str, task, dtype, quant, revision,
                upload_repo, format: str, api) -> None:  # fmt: skip
    """Each task's folder under `root` (swapped in together), then the uploads."""
    tasks = tasks_to_convert(folder, hf_path, task)
    backbone = backbone_type(folder)
    if format == "swift" and backbone != "qwen3":
        raise ValueError(
            f"--format swift: {hf_path} is a {backbone} model, and MLX Swift's "
            "MLXEmbedders has no such model type (it runs small's qwen3). Convert "
            "without --format swift for mlx_jina, or use the small model."
        )
    subs = {t: t if task == "all" else "" for t in tasks}  # --task all: a folder each
    repos = {t: upload_repo and (f"{upload_repo}-{t}" if task == "all" else upload_repo) for t in tasks}
    source, commit = recorded_source(hf_path, folder, revision)
    written = {}
    # All tasks go into one new folder, swapped in only when every one succeeded.
    with atomic.replacing(root.resolve()) as new:
        for t, sub in subs.items():
            name = repos[t] or (root / sub).name
            written[t] = convert_task(
                folder, new / sub, t, dtype, quant, source, commit, name, format=format
            )
    for t, sub in subs.items():
        print(f"[INFO] Wrote {root / sub / written[t]}")
    if format != "sentence-transformers" and backbone != "qwen3":
        print(
            f"[INFO] Note: MLX Swift's MLXEmbedders can't load this {backbone} folder "
            "(it has no such model type); mlx_jina can."
        )
    for t, sub in subs.items():
        if repos[t]:  # only once every task is written and swapped in
            upload(root / sub, repos[t], api)


def check_format(format: str, quantize: bool) -> None:
    """Refuse an unknown format, and quantizing into one that holds float weights only."""
    if format not in FORMATS:
        raise ValueError(f"format={format!r}; choose one of {', '.join(FORMATS)}.")
    if format == "sentence-transformers" and quantize:
        raise ValueError(
            "--format sentence-transformers writes float weights (transformers can't read "
            "MLX's quantized ones). Drop -q, and pick --dtype float16, bfloat16 or float32."
        )


def backbone_type(folder: Path) -> str:
    """The source's backbone ("qwen3" or "eurobert"), from its config and weight headers."""
    found = inspect_folder(folder)
    keys = sanitize(read_headers(folder, found.weight_files))
    return detect_backbone(found.config, set(keys)).model_type


def recorded_source(hf_path: str, folder: Path, revision: str | None) -> tuple[str, str | None]:
    """What the output says it was made from: the Hub id, or the local folder's name only,
    never its path (config.json and the model card are published by --upload-repo), and
    the source revision when known."""
    # A Hub cache snapshot, models--OWNER--NAME/snapshots/COMMIT, is that repo at that commit.
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        repo = folder.parent.parent.name.removeprefix("models--").replace("--", "/", 1)
        return (repo if hub.is_local(hf_path) else str(hf_path)), folder.name
    if hub.is_local(hf_path):
        return Path(hf_path).expanduser().resolve().name, revision
    return str(hf_path), revision


def convert_task(
    folder: Path,
    dst: Path,
    task: str | None,
    dtype: str | None,
    quant: Quantization | None,
    source: str,
    revision: str | None,
    card_name: str,
    *,
    format: str = "mlx",
) -> str:
    """One task's folder at `dst`; returns the weight file's name."""
    embedder = load(folder, task=task, dtype=dtype)
    report = quantize_measured(embedder, quant) if quant else None
    info = describe(embedder, source, revision, quant.bits if quant else None)
    if format == "sentence-transformers":
        write_st_folder(dst, folder, embedder, info, card_name)
        return info["weights"]
    write_folder(dst, folder, embedder, info, report, card_name)
    return info["weights"]


def tasks_to_convert(folder: Path, hf_path: str, task: str | None) -> list[str | None]:
    if task != "all":
        return [task]
    tasks = list(inspect_folder(folder).adapters)
    if not tasks:
        raise ValueError(
            f"{hf_path} has no adapters/ folder, so --task all has nothing to convert. "
            "Use the base repo, or pass its single task."
        )
    return tasks


def quantize_measured(embedder: Embedder, quant: Quantization) -> dict:
    """Quantize the model in place; return the quality report against its float self."""
    model = embedder.model
    if any(isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding)) for _, m in model.named_modules()):
        raise ValueError(f"{embedder.source} is already quantized; convert from float weights.")
    check_settings(quant, model.args.hidden_size)
    float_name = dtype_name(model)
    print(f"[INFO] Embedding the quality set with {float_name} weights")
    reference = quality.embed_set(embedder)
    print(f"[INFO] Quantizing to {quant.label}")
    for path in quantize_model(model, quant):
        print(f"[INFO] {path} stays {float_name}: input size not a multiple of {quant.group_size}")
    report = quality.compare(reference, quality.embed_set(embedder))
    report.update(
        weights=quant.label,
        reference=f"{float_name} weights of the same task",
    )
    print("[INFO] Quantized vs float:\n" + quality.markdown_table([report]))
    return report


def dtype_name(model: nn.Module) -> str:
    return str(model.norm.weight.dtype).removeprefix("mlx.core.")


def describe(embedder: Embedder, source: str, revision: str | None, bits: int | None) -> dict:
    """The config.json "mlx_jina" block: where the folder comes from and how to use it."""
    from .._version import __version__

    return {
        "version": __version__,
        "source": source,
        "revision": revision,
        "task": embedder.task,
        "prompts": embedder.prompts,
        "dims": matryoshka_dims(embedder.dim),
        "max_length": embedder.max_length,
        "weights": quantized_file(bits) if bits else FLOAT_FILE,
    }


def write_folder(
    dst: Path,
    folder: Path,
    embedder: Embedder,
    info: dict,
    report: dict | None,
    name: str,
) -> None:
    """One task's -mlx folder: weights, config, tokenizer and prompt files, pooling
    config, model card."""
    dst.mkdir(exist_ok=True)
    model = embedder.model
    # Jina's -mlx files prefix every key with "model."; the loader strips it.
    weights = {f"model.{k}": v for k, v in tree_flatten(model.parameters())}
    mx.save_safetensors(str(dst / info["weights"]), weights, metadata={"format": "mlx"})
    # Dropped from the source's config: _name_or_path (where transformers last loaded
    # it from, often a local absolute path), auto_map (remote code) and the old blocks.
    config = portable_config(read_json(folder / "config.json"), model, dtype_name(model))
    if block := quantization_config(model):
        config["quantization"] = config["quantization_config"] = block
    config["mlx_jina"] = info
    write_json(dst / "config.json", config)
    write_common_files(dst, folder, embedder)
    if report:
        write_json(dst / QUALITY_FILE, report)
    card = model_card(info, report, name, backbone=model.backbone.model_type)
    (dst / "README.md").write_text(card)


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
