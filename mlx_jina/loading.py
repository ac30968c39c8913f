"""`load()`: the front door from a folder or Hub repo id to an Embedder.

It sits above checkpoint/ (which reads and builds the model) and encoding/ (the Embedder
that runs it): resolve the source (checkpoint/hub.py), read what the folder holds and
its small files (checkpoint/folder.py), build the model (checkpoint/loader.py), compute
its content identity (checkpoint/identity.py), and hand it to an Embedder.
"""

from pathlib import Path

from .checkpoint import hub
from .checkpoint.folder import choose_tasks, inspect_folder, read_prompts, read_tokenizer
from .checkpoint.identity import identity_of, identity_parts
from .checkpoint.loader import check_load_settings, check_truncate_dim, load_settings, read_model
from .encoding.embedder import Embedder
from .tasks import parse_task


def load(
    path_or_repo: str | Path,
    *,
    task: str | None = None,
    bits: int | None = None,
    group_size: int | None = None,
    mode: str | None = None,
    recipe: str | None = None,
    dtype: str | None = None,
    revision: str | None = None,
    multitask: bool = False,
    truncate_dim: int | None = None,
) -> Embedder:
    """Load a jina-embeddings-v5-text model for encoding.

    Args:
        path_or_repo: A local folder or a Hugging Face repo id, in any published layout:
            the base repo with LoRA adapters, a merged per-task repo, or a -mlx repo.
        task: One of `mlx_jina.TASKS` (its adapter is merged at load time), or a Jina API
            task name, which also sets the default prompt. Needed when the source has
            several adapters. With `multitask=True`, the default for `encode(task=...)`.
        bits: Quantized weights: `model-{bits}bit.safetensors` when the folder has it, else
            the float weights are quantized at load (after merging the adapter). Affine
            takes 1, 2, 3, 4, 5, 6 or 8 bits. None (with no mode or recipe) uses what the
            folder holds, quantized or not.
        group_size: The group size when quantizing at load: affine 32, 64 (default) or
            128; mxfp4 and mxfp8 32; nvfp4 16. Stored quantized files carry their own,
            read from the tensor shapes.
        mode: MLX's quantization mode: "affine" (default when quantizing), "mxfp4",
            "mxfp8" or "nvfp4" (their bits and group size follow from the mode).
        recipe: Mixed precision, "mixed-4-6" or "mixed-3-6": the token embedding and the
            first and last layers' v_proj and down_proj at 6 bits, the rest at 4 (or 3).
            Combinations MLX can't run are refused before any file is read.
        dtype: `float16`, `bfloat16` or `float32`; None keeps the stored dtype.
        revision: A Hub branch, tag or commit to pin (Hub repos only).
        multitask: Keep all task adapters unmerged; pick one per call (`encode(task=)`).
        truncate_dim: Every encode call's default Matryoshka size (32 to the model's size).

    Returns an `Embedder` (`encode`, `encode_query`, `encode_document`, ...).

    Raises:
        ValueError: A bad setting, path or repo id, or files that disagree: config.json
            against the weight headers (names, shapes, dtypes), adapters, tokenizer.json.
            All of it is checked before any tensor data is read or any layer built.
        FileNotFoundError: No such folder, config.json, tokenizer.json or weight file.
    """
    quant = check_load_settings(task, bits, group_size, dtype, truncate_dim, mode, recipe)
    task, prompt_name = parse_task(task) if task is not None else (None, None)
    bits = quant and quant.bits  # which model-{bits}bit.safetensors to prefer
    folder = hub.resolve(path_or_repo, revision=revision, task=task, bits=bits, all_tasks=multitask)
    found = inspect_folder(folder, name=str(path_or_repo), bits=bits)
    check_truncate_dim(truncate_dim, found.config.get("hidden_size"))
    # Small files first: a bad tokenizer or prompt file shouldn't cost a full load.
    tokenizer = read_tokenizer(folder)
    prompts, default_prompt_name = read_prompts(folder)
    task, tasks = choose_tasks(found, task, multitask)
    model = read_model(found, tasks, multitask, quant, dtype)
    default_prompt = prompt_name or default_prompt_name
    return build_embedder(found, model, tokenizer, task, tasks, multitask, prompts, default_prompt,
                          revision, truncate_dim)  # fmt: skip


def build_embedder(found, model, tokenizer, task, tasks, multitask, prompts, default_prompt,
                   revision, truncate_dim) -> Embedder:  # fmt: skip
    """The Embedder, with the identity of what it computes (checkpoint/identity.py)."""
    settings = load_settings(model, tasks, multitask)
    # The default task and the prompts decide what encode() computes too (the task of a
    # merged folder may come from its name or its converter's block).
    settings |= {"task": task, "prompts": prompts, "default_prompt_name": default_prompt}
    parts = identity_parts(
        found.path, found.weight_files, {t: found.adapters[t] for t in tasks}, settings
    )
    return Embedder(
        model,
        tokenizer,
        task=task,
        tasks=found.tasks,
        multitask=multitask,
        revision=found.revision or revision,
        prompts=prompts,
        default_prompt_name=default_prompt,
        max_length=model.args.max_position_embeddings,
        source=found.name,
        truncate_dim=truncate_dim,
        identity=identity_of(parts),
        identity_parts=parts,
    )
