"""One benchmark run: checkpoints, corpus, matmul rates, table rows, sections."""

from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx_jina

from checkpoint import head_dim

from .corpus import CorpusSpec, make_corpus, single_token_words, workload
from .engines import Engine, MlxEmbeddings, MlxJina, Row, Transformers, run_engine
from .measure import log, matmul_rate, torch_matmul_rate
from .sections import batch_4k, causal_blocks, long_input_memory, query_overhead
from .shapes import SHAPES, WIDE_HEADS, Model, build_model

# mlx_jina's settings: activation dtype and bits for the matmul rate, load() arguments.
SETTINGS = {
    "float32": (mx.float32, None, {}),
    "float16": (mx.float16, None, {"dtype": "float16"}),
    "bfloat16": (mx.bfloat16, None, {"dtype": "bfloat16"}),
    "8-bit": (mx.float32, 8, {"bits": 8}),
    "4-bit": (mx.float32, 4, {"bits": 4}),
}
RUNS = {"small": list(SETTINGS), "nano": ["float32", "bfloat16"]}
# mlx-embeddings as its users call it, and as a careful user batches by hand.
MLX_EMBEDDINGS_RUNS = {
    "naive": "float32, batches of 32 in input order",
    "sorted": "float32, length-sorted, ≤4,096 padded tokens",
}
PIP = (
    "pip install --no-deps mlx-embeddings==0.1.0 mlx-vlm==0.7.10 "
    "requests urllib3 pillow"
)


@dataclass
class Results:
    spec: CorpusSpec
    models: dict[str, Model]
    lengths: list[int]  # tokens of each text, small's tokenizer
    rows: list[Row]
    rates: dict[tuple[str, str], float]  # GFLOP/s by (model name, setting)
    at_4k: dict[str, dict[str, tuple]]
    overhead: dict[str, float]
    blocks: dict[int, float]
    long: list[tuple[int, float, float]]
    notes: list[str]

    @property
    def peers(self) -> dict[str, dict[str, float]]:
        """tokens/s of the rows the ratio columns divide by, per backbone."""
        peers = {"qwen3": {}, "eurobert": {}}
        for r in self.rows:
            if r.peer:
                peers[r.model][r.peer] = r.tokens_per_s
        return peers


def backend_rates(models: dict[str, Model]) -> dict[tuple[str, str], float]:
    rates = {}
    for name, model in models.items():
        for label in RUNS[name]:
            dtype, bits, _ = SETTINGS[label]
            rates[name, label] = matmul_rate(model, dtype, bits)
    # Two reference points: quantized weights with float16 activations, and torch.
    rates["small", "8-bit with float16 activations (128 rows)"] = matmul_rate(
        models["small"], mx.float16, 8, tokens=128
    )
    rates["small", "torch float32"] = torch_matmul_rate(models["small"])
    return rates


def table_engines(model: Model, notes: list[str]) -> list[tuple[Engine, str | None]]:
    """The engines of one model's rows, each with the setting of its matmul rate."""
    engines = [
        (MlxJina(model, label, SETTINGS[label][2]), label) for label in RUNS[model.name]
    ]
    if model.arch != "qwen3":
        notes.append("mlx-embeddings 0.1.0 has no EuroBERT model: no nano peer rows.")
    else:
        try:
            from mlx_embeddings.utils import load_model  # noqa: F401
        except ImportError as e:
            notes.append(f"mlx-embeddings rows missing: {e}. Install it with `{PIP}`.")
        else:
            engines += [
                (MlxEmbeddings(model, label, peer), "float32")
                for peer, label in MLX_EMBEDDINGS_RUNS.items()
            ]
    return engines + [(Transformers(model), None)]


def sections(root: Path, models: dict[str, Model], rates: dict, long_max: int) -> dict:
    log("single-query overhead, 4K batches, causal blocks ...")
    small = models["small"]
    overhead = query_overhead(small, "what is the capital of france")
    name = f"small-shaped, heads of {head_dim(small.config)}, {small.layers} layers"
    at_4k = {name: batch_4k(small, rates["small", "float32"])}
    wide = build_model(root, "small-heads128", "qwen3", layers=1, seed=4, **WIDE_HEADS)
    name = "small's heads of 128 (4/2 heads, hidden 256, MLP 768), 1 layer"
    at_4k[name] = batch_4k(wide, matmul_rate(wide, mx.float32, None))
    blocks = causal_blocks()
    log("long inputs ...")
    long = long_input_memory(root, long_max)
    return dict(at_4k=at_4k, overhead=overhead, blocks=blocks, long=long)


def run(root: Path, spec: CorpusSpec, layers: int, long_max: int) -> Results:
    """Build the checkpoints under `root`, then measure everything the report shows."""
    models = {
        name: build_model(root, name, arch, layers, seed=i, **shape)
        for i, (name, (arch, shape)) in enumerate(SHAPES.items())
    }
    embedders = {name: mlx_jina.load(m.folder) for name, m in models.items()}
    words = sorted(
        set.intersection(*(set(single_token_words(e)) for e in embedders.values()))
    )
    texts = make_corpus(words, spec)
    log(f"corpus: {len(texts)} texts; {len(words)} single-token words")
    works = {name: workload(e, texts) for name, e in embedders.items()}

    log("matmul rates ...")
    rates = backend_rates(models)
    rows, notes = [], []
    for name, model in models.items():
        for engine, setting in table_engines(model, notes):
            log(f"{engine.name} {name} {engine.label} ...")
            rows.append(run_engine(engine, works[name], rates.get((name, setting))))
    lengths = [len(r) for r in works["small"].ids]
    extra = sections(root, models, rates, long_max)
    return Results(spec, models, lengths, rows, rates, notes=notes, **extra)
