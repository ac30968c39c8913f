"""What a model folder holds, from its files alone: layout, weight files, adapters, tasks;
and its small files: config.json, tokenizer.json and the prompts.

Layouts (docs/model-facts.md): "base" (weights + PEFT adapters/<task>/), "merged" (one task
merged in), "mlx-task" (per-task -mlx folder) and "mlx-unified" (-mlx weights +
adapters/). Only JSON, tokenizer.json and safetensors are read; Python files in a model
folder are never imported.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import Tokenizer

from ..tasks import DEFAULT_PROMPT_NAME, DEFAULT_PROMPTS, TASK_SUFFIX, TASKS
from .adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from .safetensors import TOKENIZER_LIMIT, open_regular, read_json
from .weights import pick_weight_files


@dataclass
class ModelFolder:
    """A model folder and what its files say."""

    path: Path
    name: str  # what the user passed: a repo id or a folder
    config: dict
    layout: str
    weight_files: list[str]
    adapters: dict[str, Path] = field(default_factory=dict)

    @property
    def tasks(self) -> tuple[str, ...]:
        """The adapters it holds; or the one task it was merged or converted for, if known."""
        if self.adapters:
            return tuple(self.adapters)
        saved = (self.config.get("mlx_jina") or {}).get("task")
        found = TASK_SUFFIX.search(self.name.rstrip("/"))
        task = saved or (found and found.group(1))
        return (task,) if task else ()

    @property
    def revision(self) -> str | None:
        # A Hub download lives in snapshots/<commit>; local folders have no revision.
        return self.path.name if self.path.parent.name == "snapshots" else None


def inspect_folder(folder: Path, name: str | None = None, bits: int | None = None) -> ModelFolder:
    config_file = folder / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"No config.json in {folder}. Is this a model folder?")
    config = read_json(config_file)
    check_loader_fields(config, config_file)
    # Every name, not only regular files: a FIFO or folder in a weight file's place
    # is refused by name when it is read, rather than silently skipped.
    files = {p.name for p in folder.iterdir()}
    adapters = find_adapters(folder / "adapters", config)
    mlx_style = bool({"model.py", "utils.py"} & files) or "mlx_jina" in config
    if adapters:
        layout = "mlx-unified" if mlx_style else "base"
    else:
        layout = "mlx-task" if mlx_style or any("bit.safetensors" in f for f in files) else "merged"
    weight_files = pick_weight_files(files, bits)
    return ModelFolder(folder, name or folder.name, config, layout, weight_files, adapters)


def find_adapters(root: Path, config: dict) -> dict[str, Path]:
    """Task -> adapter folder, in the config's task order when it has one."""
    if not root.is_dir():
        return {}
    # A Hub download for one task has the other tasks' adapter_config.json only.
    found = {
        p.name: p
        for p in root.iterdir()
        if (p / ADAPTER_WEIGHTS).exists() or (p / ADAPTER_CONFIG).exists()
    }
    order = [t for t in config.get("task_names") or [] if t in found]
    return {t: found[t] for t in order + sorted(set(found) - set(order))}


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


def choose_tasks(
    found: ModelFolder, task: str | None, multitask: bool
) -> tuple[str | None, list[str]]:
    """The task a model loads for, and the adapters to read for it."""
    if multitask:
        if not found.adapters:
            raise ValueError(
                f"{found.name} has no adapters/ folder, so it holds one task only. "
                "multitask=True needs the base repo or a unified -mlx repo."
            )
        if task is not None and task not in found.tasks:
            raise ValueError(f"Unknown task {task!r}. Available tasks: {', '.join(found.tasks)}.")
        return task, list(found.adapters)
    task = choose_task(found, task)
    return task, [task] if found.adapters else []


def choose_task(found: ModelFolder, task: str | None) -> str | None:
    """The one task a single-task load uses: given, or the folder's only one."""
    tasks = found.tasks
    if task is not None and task not in TASKS:
        raise ValueError(f"Unknown task {task!r}. Available tasks: {', '.join(tasks or TASKS)}.")
    if found.adapters:
        if task is None:
            if len(tasks) == 1:
                return tasks[0]
            raise ValueError(
                f"{found.name} has adapters for several tasks; pass task=. "
                f"Available tasks: {', '.join(tasks)}."
            )
        if task not in tasks:
            raise ValueError(f"Unknown task {task!r}. Available tasks: {', '.join(tasks)}.")
        return task
    if task is not None and tasks and task != tasks[0]:
        raise ValueError(
            f"{found.name} was converted for task {tasks[0]!r}, not {task!r}. "
            "Load the repo for that task, or the base repo."
        )
    return task or (tasks[0] if tasks else None)


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
