"""The one table of what the tasks are: adapters, Jina API names, prompts, Matryoshka sizes.

Every other module reads these names from here; none spells them out again.
"""

import re

# Adapters trained on symmetric pairs: every input is embedded as a document.
SYMMETRIC_TASKS = ("text-matching", "classification", "clustering")
# The LoRA adapters of jina-embeddings-v5-text, in Jina's order (`task=` in Python).
TASKS = ("retrieval",) + SYMMETRIC_TASKS
RETRIEVAL, TEXT_MATCHING, CLASSIFICATION, CLUSTERING = TASKS

# Prompt name -> text, when the model folder has no config_sentence_transformers.json.
DEFAULT_PROMPTS = {"query": "Query: ", "document": "Document: "}
DEFAULT_PROMPT_NAME = "document"

# Jina's API task names -> (adapter, prompt name); only retrieval tells queries apart.
API_TASKS = {
    "retrieval.query": ("retrieval", "query"),
    "retrieval.passage": ("retrieval", "document"),
    **{task: (task, "document") for task in SYMMETRIC_TASKS},
}

# Jina's Matryoshka ladder; vectors may be cut to any size from the first to the full one.
MATRYOSHKA_DIMS = (32, 64, 128, 256, 512, 768, 1024)
MIN_DIM = MATRYOSHKA_DIMS[0]

# A repo or folder named after its task: ...-text-matching, ...-retrieval-mlx.
TASK_SUFFIX = re.compile(rf"-({'|'.join(map(re.escape, TASKS))})(-mlx)?$")


def matryoshka_dims(dim: int) -> list[int]:
    """The ladder's sizes below `dim`, then `dim` itself."""
    return [d for d in MATRYOSHKA_DIMS if d < dim] + [dim]


def task_prompts(prompts: dict[str, str], task: str | None) -> dict[str, str]:
    """Prompt name -> text for `task`: symmetric tasks use the document prompt for all."""
    if task in SYMMETRIC_TASKS:
        document = prompts.get("document", DEFAULT_PROMPTS["document"])
        return {name: document for name in prompts}
    return dict(prompts)

# Every name a `task` setting takes, in Python, the CLI and the server alike: the adapter
# names, and Jina's API names (which also pick the prompt).
TASK_NAMES = TASKS + tuple(name for name in API_TASKS if name not in TASKS)


def parse_task(name: str) -> tuple[str, str | None]:
    """An adapter name or a Jina API task name -> (adapter, prompt name).

    The prompt name is None for a bare adapter name: the caller's prompt rule applies
    (for "retrieval", documents unless told otherwise).
    """
    if name in TASKS:
        return name, None
    if name in API_TASKS:
        return API_TASKS[name]
    raise ValueError(
        f"Unknown task {name!r}. Use an adapter name ({', '.join(TASKS)}) or a Jina API "
        f"task name ({', '.join(n for n in TASK_NAMES if n not in TASKS)})."
    )
