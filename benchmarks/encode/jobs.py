"""The rows of the table as jobs, and the batches each engine runs.

A job is one engine in one setting on one model: plain data, written to the run folder
as JSON, so a fresh process can run it. Batches are lists of input indices, computed in
the parent and handed to the peers' processes, so every engine that follows a plan gets
exactly the same batches.
"""

import importlib.util
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .corpus import Workload

JINA = "mlx_jina"
MLX_EMBEDDINGS = "mlx-embeddings"
TRANSFORMERS = "transformers"
# mlx_jina's settings: load() arguments; bits= quantizes the float32 weights at load, so
# the quantized rows run float32 activations. The 16-bit and quantized ones are slow on
# MLX's CPU backend (no BLAS path), so they run the corpus's subset.
LOAD = {"float32": {}, "bfloat16": {"dtype": "bfloat16"}, "float16": {"dtype": "float16"},
        "8-bit": {"bits": 8}, "4-bit": {"bits": 4}}  # fmt: skip
JINA_SETTINGS = {"small": list(LOAD), "nano": ["float32", "bfloat16"]}
# The peers' batchings: as their documentation has users run them, and our plan.
PEER_BATCHINGS = {
    MLX_EMBEDDINGS: ["README: batches of 32 in input order", "our batch plan"],
    TRANSFORMERS: ["sentence-transformers: length-sorted batches of 32", "our batch plan"],
}
PIP = {
    MLX_EMBEDDINGS: "pip install --no-deps mlx-embeddings==0.1.0 mlx-vlm==0.7.10 requests urllib3 pillow",
    TRANSFORMERS: "pip install torch transformers",
}
BATCH_SIZE = 32  # sentence-transformers' default, and mlx_jina's
MAX_BATCH_TOKENS = 8192  # mlx_jina's `encode` default


@dataclass
class Job:
    key: str  # unique, also the result file's name
    engine: str  # JINA, MLX_EMBEDDINGS or TRANSFORMERS
    model: str  # "small" or "nano"
    setting: str  # mlx_jina: the weights; peers: the batching
    subset: bool  # runs the corpus's subset only
    batches: list[list[int]] | None = None  # the peers' batches; mlx_jina plans its own
    also_subset: bool = False  # mlx_jina float32: a second pass over the subset

    @property
    def uses_mlx(self) -> bool:
        return self.engine != TRANSFORMERS


def our_plan(ids: list[list[int]]) -> list[list[int]]:
    """mlx_jina's own batches at its `encode` defaults: length-sorted, padding-bounded."""
    from internals import plan_batches  # loads mlx_jina: not at import, for torch's process

    return plan_batches([len(row) for row in ids], BATCH_SIZE, MAX_BATCH_TOKENS).batches


def peer_batches(setting: str, work: Workload) -> list[list[int]]:
    """README: consecutive batches of 32 in input order. sentence-transformers' `encode`:
    sorted by character length, longest first, then batches of 32. Each padded to its
    longest text."""
    n = len(work.ids)
    if setting.startswith("README"):
        return [list(range(i, min(i + BATCH_SIZE, n))) for i in range(0, n, BATCH_SIZE)]
    if setting.startswith("sentence-transformers"):
        order = sorted(range(n), key=lambda i: -len(work.texts[i]))
        return [order[i : i + BATCH_SIZE] for i in range(0, n, BATCH_SIZE)]
    return our_plan(work.ids)


def installed(engine: str) -> bool:
    names = {JINA: ["mlx_jina"], MLX_EMBEDDINGS: ["mlx_embeddings"]}.get(engine, ["torch", "transformers"])
    return all(importlib.util.find_spec(n) is not None for n in names)


def plan_jobs(works: dict[str, Workload], notes: list[str]) -> list[Job]:
    """Every row's job, and a note for each engine that cannot run here."""
    jobs = []
    for model, work in works.items():
        for s in JINA_SETTINGS[model]:
            jobs.append(Job(f"{model}-{JINA}-{s}", JINA, model, s, s != "float32", None, s == "float32"))
        for engine, batchings in PEER_BATCHINGS.items():
            if engine == MLX_EMBEDDINGS and model == "nano":
                continue  # mlx-embeddings 0.1.0 has no EuroBERT model
            for setting, kind in zip(batchings, ("documented", "plan"), strict=True):
                jobs.append(Job(f"{model}-{engine}-{kind}", engine, model, setting, False,
                                peer_batches(setting, work)))  # fmt: skip
    notes += [f"{e} is not installed: its rows are empty (`{PIP[e]}`)." for e in PEER_BATCHINGS
              if not installed(e)]  # fmt: skip
    return jobs


def save_jobs(jobs: list[Job], path: Path) -> None:
    path.write_text(json.dumps([asdict(j) for j in jobs]))


def load_jobs(path: Path) -> dict[str, Job]:
    return {d["key"]: Job(**d) for d in json.loads(path.read_text())}
