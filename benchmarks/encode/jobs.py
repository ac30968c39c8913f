"""The rows of the table as jobs: one job is one engine in one setting on one model.

A job is plain data, written to the run folder as JSON, so a fresh process can run it.
"""

import importlib.util
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .corpus import Workload

JINA = "mlx_jina"
MLX_EMBEDDINGS = "mlx-embeddings"
TRANSFORMERS = "transformers"
# mlx_jina's settings per model; the 16-bit and quantized ones are slow on MLX's CPU
# backend (no BLAS path), so they run the corpus's subset.
JINA_SETTINGS = {"small": ["float32", "bfloat16", "float16", "8-bit", "4-bit"],
                 "nano": ["float32", "bfloat16"]}
# The peers' batchings: as their documentation has users run them, and our plan.
PEER_BATCHINGS = {
    MLX_EMBEDDINGS: ["README: batches of 32 in input order", "our batch plan"],
    TRANSFORMERS: ["sentence-transformers: length-sorted batches of 32", "our batch plan"],
}
PIP = {
    MLX_EMBEDDINGS: "pip install --no-deps mlx-embeddings==0.1.0 mlx-vlm==0.7.10 requests urllib3 pillow",
    TRANSFORMERS: "pip install torch transformers",
}


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


def installed(engine: str) -> bool:
    module = {JINA: "mlx_jina", MLX_EMBEDDINGS: "mlx_embeddings"}.get(engine)
    names = [module] if module else ["torch", "transformers"]
    return all(importlib.util.find_spec(n) is not None for n in names)


def peer_batches(setting: str, work: Workload) -> list[list[int]]:
    # Imported here: batch_plans loads mlx_jina, which a torch process must not.
    from .batch_plans import input_order, our_plan, sentence_transformers

    if setting.startswith("README"):
        return input_order(len(work.ids))
    if setting.startswith("sentence-transformers"):
        return sentence_transformers(work.texts)
    return our_plan(work.ids)


def plan_jobs(works: dict[str, Workload], notes: list[str]) -> list[Job]:
    """Every row's job, and a note for each row that cannot run here."""
    jobs = []
    for model, work in works.items():
        for s in JINA_SETTINGS[model]:
            key = f"{model}-{JINA}-{s}"
            jobs.append(Job(key, JINA, model, s, s != "float32", None, s == "float32"))
        for engine, batchings in PEER_BATCHINGS.items():
            if engine == MLX_EMBEDDINGS and model == "nano":
                continue  # mlx-embeddings 0.1.0 has no EuroBERT model
            for i, setting in enumerate(batchings):
                key = f"{model}-{engine}-{'documented' if i == 0 else 'plan'}"
                batches = peer_batches(setting, work)
                jobs.append(Job(key, engine, model, setting, False, batches))
    for engine in PEER_BATCHINGS:
        if not installed(engine):
            notes.append(
                f"{engine} is not installed: its rows are empty (`{PIP[engine]}`)."
            )
    return jobs


def runnable(jobs: list[Job]) -> list[Job]:
    return [j for j in jobs if installed(j.engine)]


def rotated(jobs: list[Job], r: int, rounds: int) -> list[Job]:
    """Round r's order: the list rotated by r/rounds of its length, so every engine
    takes early, middle and late places across the rounds."""
    k = r * len(jobs) // max(rounds, 1)
    return jobs[k:] + jobs[:k]


def save_jobs(jobs: list[Job], path: Path) -> None:
    path.write_text(json.dumps([asdict(j) for j in jobs]))


def load_jobs(path: Path) -> dict[str, Job]:
    return {d["key"]: Job(**d) for d in json.loads(path.read_text())}
