"""Folder or repo id -> Embedder, for every published jina-embeddings-v5-text layout.

Layouts (model-facts §2): "base" (weights + PEFT adapters/<task>/), "merged" (one task
merged in), "mlx-task" (per-task -mlx folder) and "mlx-unified" (-mlx weights +
adapters/). Only JSON, tokenizer.json and safetensors are read; Python files in a model
folder are never imported.
"""

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from tokenizers import Tokenizer

from . import hub
from .tasks import DEFAULT_PROMPT_NAME, DEFAULT_PROMPTS, TASK_SUFFIX, TASKS
from .embedder import Embedder
from .lora import ADAPTER_WEIGHTS, check_adapter, merge, read_adapter
from .models import MODELS
from .models.base import sanitize
from .multitask import add_adapters
from .quantize import check_settings, infer_quantization, quantize_like, quantize_model
from .weights import (
    FLOATS,
    TOKENIZER_LIMIT,
    TensorInfo,
    list_problems,
    load_weights,
    open_regular,
    pick_weight_files,
    quantized_file,
    read_headers,
    read_json,
)

DTYPES = {"float16": mx.float16, "bfloat16": mx.bfloat16, "float32": mx.float32}
LAYER = re.compile(r"layers\.(\d+)\.")


@dataclass
class Source:
    """What a model folder holds, decided from its files alone."""

    folder: Path
    name: str
    config: dict
    layout: str
    weight_files: list[str]
    adapters: dict[str, Path] = field(default_factory=dict)

    @property
    def tasks(self) -> tuple[str, ...]:
        if self.adapters:
            return tuple(self.adapters)
        saved = (self.config.get("mlx_jina") or {}).get("task")
        found = TASK_SUFFIX.search(self.name.rstrip("/"))
        task = saved or (found and found.group(1))
        return (task,) if task else ()


def inspect_folder(folder: Path, name: str | None = None, bits: int | None = None) -> Source:
    config_file = folder / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"No config.json in {folder}. Is this a model folder?")
    config = read_json(config_file)
    check_loader_fields(config, config_file)
    # Every name, not only regular files: a FIFO or folder in a weight file's place
    # is refused by name when it is read, rather than silently skipped.
    files = {p.name for p in folder.iterdir()}
    adapter_root = folder / "adapters"
    adapters = {}
    if adapter_root.is_dir():
        # A Hub download for one task has the other tasks' adapter_config.json only.
        found = {
            p.name: p
            for p in adapter_root.iterdir()
            if (p / ADAPTER_WEIGHTS).exists() or (p / "adapter_config.json").exists()
        }
        # Keep the config's task order when it has one.
        order = [t for t in config.get("task_names") or [] if t in found]
        adapters = {t: found[t] for t in order + sorted(set(found) - set(order))}
    mlx_style = bool({"model.py", "utils.py"} & files) or "mlx_jina" in config
    if adapters:
        layout = "mlx-unified" if mlx_style else "base"
    else:
        layout = "mlx-task" if mlx_style or any("bit.safetensors" in f for f in files) else "merged"
    weight_files = pick_weight_files(files, bits)
    return Source(folder, name or folder.name, config, layout, weight_files, adapters)


def check_loader_fields(config: dict, path: Path) -> None:
    """Types of the fields the loader reads itself; ModelArgs checks the backbone's."""
    lists = ("architectures", "task_names")
    for key in (*lists, "mlx_jina", "quantization", "quantization_config"):
        value = config.get(key)
        if key in lists:
            ok = isinstance(value, list) and all(isinstance(x, str) for x in value)
        else:
            ok = isinstance(value, dict)
        if value is not None and not ok:
            need = "a list of strings" if key in lists else "an object"
            raise ValueError(f"{path} has {key}={value!r}"[:200] + f"; it must be {need}.")
    task = (config.get("mlx_jina") or {}).get("task")
    if task is not None and task not in TASKS:
        raise ValueError(
            f"{path} has mlx_jina.task={task!r}"[:200] + f"; it must be one of {', '.join(TASKS)}."
        )


def detect_backbone(config: dict, keys: set[str]) -> str:
    """'qwen3' (small, causal) or 'eurobert' (nano, bidirectional)."""
    model_type = config.get("model_type")
    has_q_norm = any(k.endswith("self_attn.q_norm.weight") for k in keys)
    has_layers = any(".self_attn." in k for k in keys)
    if isinstance(model_type, str) and model_type in MODELS:
        kind = model_type
    elif model_type == "jina_embeddings_v5":
        archs = " ".join(config.get("architectures") or []).lower()
        if "qwen3" in archs or "eurobert" in archs:
            kind = "qwen3" if "qwen3" in archs else "eurobert"
        elif has_layers:
            # Qwen3 is the only backbone with per-head q/k norms.
            kind = "qwen3" if has_q_norm else "eurobert"
        else:
            raise ValueError(
                "Can't tell the backbone: config.json says model_type 'jina_embeddings_v5' and "
                "the weights have no attention layers. Set model_type to 'qwen3' or 'eurobert'."
            )
    else:
        raise ValueError(
            f"Unsupported model_type {model_type!r}"[:100] + "; expected 'jina_embeddings_v5', "
            "'qwen3' or 'eurobert'."
        )
    if has_layers and has_q_norm != (kind == "qwen3"):
        raise ValueError(
            f"config.json describes a {kind} model but the weights "
            f"{'have' if has_q_norm else 'lack'} q_norm/k_norm. The config and weights disagree."
        )
    return kind


def pick_task(source: Source, task: str | None) -> str | None:
    tasks = source.tasks
    if task is not None and task not in TASKS:
        raise ValueError(f"Unknown task {task!r}. Available tasks: {', '.join(tasks or TASKS)}.")
    if source.adapters:
        if task is None:
            if len(tasks) == 1:
                return tasks[0]
            raise ValueError(
                f"{source.name} has adapters for several tasks; pass task=. "
                f"Available tasks: {', '.join(tasks)}."
            )
        if task not in tasks:
            raise ValueError(f"Unknown task {task!r}. Available tasks: {', '.join(tasks)}.")
        return task
    if task is not None and tasks and task != tasks[0]:
        raise ValueError(
            f"{source.name} was converted for task {tasks[0]!r}, not {task!r}. "
            "Load the repo for that task, or the base repo."
        )
    return task or (tasks[0] if tasks else None)


def cast_floats(weights: dict[str, mx.array], dtype: str | None) -> dict[str, mx.array]:
    """Cast floating-point arrays to `dtype` (None: unchanged); packed integers stay."""
    if dtype is None:
        return weights
    target = DTYPES[dtype]
    return {
        k: v.astype(target) if mx.issubdtype(v.dtype, mx.floating) else v
        for k, v in weights.items()
    }


def check_checkpoint(config: dict, tensors: dict[str, TensorInfo], where: str):
    """Check config.json against the weight files' headers, before anything is built.

    Returns the backbone module, its args and the quantized layers. Every problem ends
    in one ValueError that lists a few and counts the rest.
    """
    kind = detect_backbone(config, set(tensors))
    module = MODELS[kind]
    args = module.ModelArgs.from_dict(config, {k: t.shape for k, t in tensors.items()})
    problem = f"The weights don't fit a {kind} model built from config.json ({where}):"
    # Count first: a config claiming 100,000 layers must not cost 100,000 of anything.
    layers = {m.group(1) for k in tensors if (m := LAYER.match(k))}
    if len(layers) != args.num_hidden_layers:
        raise ValueError(
            f"{problem} config.json says num_hidden_layers={args.num_hidden_layers}, the "
            f"weights hold {len(layers)} layers."
        )
    shapes = module.weight_shapes(args)
    quantized, problems = infer_quantization(shapes, tensors, config, where)
    # Layers with scales were judged above, right or wrong.
    packed = {k.removesuffix(".scales") for k in tensors if k.endswith(".scales")}
    for key, shape in shapes.items():
        t = tensors.get(key)
        if t is None:
            problems.append(f"{key} is missing")
        elif key.removesuffix(".weight") in packed:
            continue
        elif t.dtype not in FLOATS:
            problems.append(f"{key} is {t.dtype}; float weights must be F16, BF16 or F32")
        elif t.shape != shape:
            problems.append(f"{key} has shape {t.shape}; config.json implies {shape}")
    judged = {f"{p}.{s}" for p in packed for s in ("scales", "biases")}
    problems += [f"unexpected tensor {k}" for k in sorted(set(tensors) - set(shapes) - judged)]
    if problems:
        raise ValueError(problem + list_problems(problems))
    return module, args, quantized


def build_model(
    module, args, quantized: dict[str, tuple[int, int]], weights: dict[str, mx.array], dtype
) -> nn.Module:
    """The model, from weights that `check_checkpoint` accepted."""
    model = module.Model(args)
    # Quantize exactly the layers the checkpoint stores quantized (`<path>.scales`).
    quantize_like(model, quantized)
    if dtype is not None:
        weights = cast_floats(weights, dtype)
    else:
        # The stored float dtype; quantized layers' packed words are uint32.
        floats = [v.dtype for v in weights.values() if mx.issubdtype(v.dtype, mx.floating)]
        model.set_dtype(floats[0] if floats else mx.float32)
    model.load_weights(list(weights.items()), strict=True)
    mx.eval(model.parameters())
    return model


def read_tokenizer(folder: Path) -> Tokenizer:
    path = folder / "tokenizer.json"
    if not path.exists():
        raise FileNotFoundError(f"No tokenizer.json in {folder}; the model needs its tokenizer.")
    with open_regular(path, TOKENIZER_LIMIT) as f:
        raw = f.read(TOKENIZER_LIMIT + 1)
    try:
        return Tokenizer.from_str(raw.decode())
    except Exception as e:  # tokenizers raises bare Exceptions
        raise ValueError(
            f"{path} is not a tokenizer.json the tokenizers library can read "
            f"({str(e)[:200]}). Replace it with the file from the model repo."
        ) from None


def read_prompts(folder: Path) -> tuple[dict[str, str], str]:
    path = folder / "config_sentence_transformers.json"
    st = read_json(path) if path.exists() else {}
    prompts = st.get("prompts") or DEFAULT_PROMPTS
    default = st.get("default_prompt_name") or DEFAULT_PROMPT_NAME
    if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
        raise ValueError(
            f"{path} has prompts={prompts!r}"[:200] + "; it must be an object of names and "
            f"texts, like {json.dumps(DEFAULT_PROMPTS)}."
        )
    if not isinstance(default, str) or default not in prompts:
        raise ValueError(
            f"{path} has default_prompt_name={default!r}"[:200] + "; it must name one of its "
            f"prompts: {', '.join(sorted(prompts))}."
        )
    return dict(prompts), default


def load(
    path_or_repo: str | Path,
    *,
    task: str | None = None,
    bits: int | None = None,
    group_size: int = 64,
    dtype: str | None = None,
    revision: str | None = None,
    multitask: bool = False,
) -> Embedder:
    """Load a jina-embeddings-v5-text model for encoding.

    Args:
        path_or_repo: A local folder or a Hugging Face repo id, in any published layout:
            the base repo with LoRA adapters, a merged per-task repo, or a -mlx repo.
        task: One of `mlx_jina.TASKS` (retrieval, text matching, classification,
            clustering). Its adapter
            is merged at load time. Needed when the source has several adapters. With
            `multitask=True` it is only the default for `encode(task=...)`.
        bits: 4 or 8 for quantized weights: `model-{bits}bit.safetensors` when the folder
            has it, else the float weights are quantized at load (after merging the
            adapter). None uses what the folder holds, quantized or not.
        group_size: Affine quantization group size when quantizing at load (32, 64, 128).
            Stored quantized files carry their own, read from the tensor shapes.
        dtype: `float16`, `bfloat16` or `float32`; None keeps the stored dtype.
        revision: A Hub branch, tag or commit to pin (Hub repos only).
        multitask: Keep the base weights once with all task adapters unmerged and pick the
            task per call with `encode(..., task=...)`. Needs a source with `adapters/`.

    Returns:
        An `Embedder` with `encode`, `encode_query` and `encode_document`.

    Raises:
        ValueError: A bad setting, path or repo id, or files that disagree: config.json
            against the weight headers (names, shapes, dtypes), adapters, tokenizer.json.
            All of it is checked before any tensor data is read or any layer built.
        FileNotFoundError: No such folder, config.json, tokenizer.json or weight file.
    """
    if dtype is not None and (not isinstance(dtype, str) or dtype not in DTYPES):
        raise ValueError(f"dtype={dtype!r}; choose one of {', '.join(DTYPES)} or None.")
    if bits is not None:
        check_settings(bits, group_size)
    if task is not None and task not in TASKS:
        raise ValueError(f"Unknown task {task!r}. Available tasks: {', '.join(TASKS)}.")
    folder = hub.resolve(path_or_repo, revision=revision, task=task, bits=bits, all_tasks=multitask)
    source = inspect_folder(folder, name=str(path_or_repo), bits=bits)
    # Small files first: a bad tokenizer or prompt file shouldn't cost a full load.
    tokenizer = read_tokenizer(folder)
    prompts, default_prompt_name = read_prompts(folder)
    if multitask:
        if not source.adapters:
            raise ValueError(
                f"{source.name} has no adapters/ folder, so it holds one task only. multitask=True "
                "needs the base repo or a unified -mlx repo."
            )
        if task is not None and task not in source.tasks:
            raise ValueError(f"Unknown task {task!r}. Available tasks: {', '.join(source.tasks)}.")
        tasks = list(source.adapters)
    else:
        task = pick_task(source, task)
        tasks = [task] if source.adapters else []
    if bits is not None and not source.weight_files:
        have = sorted(p.name for p in folder.glob("model-*bit.safetensors"))
        raise FileNotFoundError(
            f"No {quantized_file(bits)} and no float weights to quantize in {folder} "
            f"(it has {', '.join(have) or 'no model*.safetensors'}). Load with bits=None."
        )
    where = ", ".join(str(folder / f) for f in source.weight_files)
    # Headers only: config.json and every tensor's dtype and shape agree before any
    # data is read or any layer built.
    tensors = sanitize(read_headers(folder, source.weight_files))
    module, args, quantized = check_checkpoint(source.config, tensors, where)
    adapters = [read_adapter(source.adapters[t], t) for t in tasks]
    shapes = module.weight_shapes(args)
    for adapter in adapters:  # the float shapes, whether merged or not, quantized or not
        check_adapter(shapes, adapter)
    weights = sanitize(load_weights(folder, source.weight_files))
    if adapters and not (multitask or quantized):
        # Cast first: a float32 load of 16-bit files then merges without rounding.
        weights = cast_floats(weights, dtype)
        weights = merge(weights, adapters[0])
    model = build_model(module, args, quantized, weights, dtype)
    if quantized and bits is not None:
        kinds = (nn.QuantizedLinear, nn.QuantizedEmbedding)
        found = {m.bits for _, m in model.named_modules() if isinstance(m, kinds)}
        if found != {bits}:
            raise ValueError(
                f"{where} holds {'/'.join(map(str, sorted(found)))}-bit weights, not {bits}-bit. "
                "Load with bits=None, or from float weights to quantize at load."
            )
    elif bits is not None:
        # A merged adapter is quantized with the base; unmerged ones stay float (below).
        if skipped := quantize_model(model, bits, group_size):
            warnings.warn(
                f"{len(skipped)} layers stay float: their input size is not a multiple of "
                f"group_size={group_size} (e.g. {skipped[0]}).",
                stacklevel=2,
            )
    if adapters and (multitask or quantized):
        # Unmerged LoRA: the base stays as loaded (possibly quantized), adapters float.
        add_adapters(model, adapters)
    return Embedder(
        model,
        tokenizer,
        task=task,
        tasks=source.tasks,
        multitask=multitask,
        # A Hub download lives in snapshots/<commit>; local folders have no revision.
        revision=folder.name if folder.parent.name == "snapshots" else revision,
        prompts=prompts,
        default_prompt_name=default_prompt_name,
        max_length=args.max_position_embeddings,
        source=source.name,
    )
