"""How search results change as Matryoshka vectors shrink, and what each size costs.

    python examples/matryoshka.py
    python examples/matryoshka.py --corpus docs.txt --queries questions.txt  # one text a line

For each size it prints the bytes per vector (float32, int8, binary) and how many of
the full-size top-k results the smaller vectors still find.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

import mlx_jina
from mlx_jina.retrieval.precision import bytes_per_vector

sys.path.insert(0, str(Path(__file__).resolve().parent))  # example_cli.py beside it
from example_cli import load_model, read_lines  # noqa: E402

CORPUS = [
    "Mars is often called the Red Planet because of iron oxide on its surface.",
    "Venus is the hottest planet in the solar system.",
    "Jupiter is a gas giant with a great red spot.",
    "The Moon causes the tides on Earth.", "Photosynthesis turns sunlight into chemical energy.",
    "Mitochondria are the powerhouse of the cell.", "DNA carries genetic information.",
    "The Eiffel Tower is in Paris.", "The Colosseum is an ancient amphitheatre in Rome.",
    "Berlin is the capital of Germany.", "Python is a popular programming language.",
    "MLX is an array framework for Apple silicon.", "A hash map gives constant-time lookups.",
]
QUERIES = ["Which planet is known as the Red Planet?", "What produces energy in cells?",
           "Famous landmarks in Europe", "fast data structures"]

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--corpus", type=Path, help="text file, one document a line")
parser.add_argument("--queries", type=Path, help="text file, one query a line")
parser.add_argument("--top-k", type=int, default=3, help="results compared per query")
parser.add_argument("--model", default="jinaai/jina-embeddings-v5-text-small",
                    help="folder or Hub repo holding the retrieval adapter")
args = parser.parse_args()


def lines(path: Path | None, default: list[str]) -> list[str]:
    return read_lines(path) if path else default


corpus, queries = lines(args.corpus, CORPUS), lines(args.queries, QUERIES)
model = load_model(args.model, "retrieval")
docs, qs = model.encode_document(corpus), model.encode_query(queries)
full = [[h["corpus_id"] for h in hits] for hits in mlx_jina.semantic_search(qs, docs, args.top_k)]

print(f"{'dims':>5} {'float32 B':>10} {'int8 B':>7} {'binary B':>9} {'top-k kept':>11}")
for dims in [d for d in (1024, 768, 512, 256, 128, 64, 32) if d <= model.dim]:
    # Keep the first `dims` values; semantic_search re-normalizes, as truncate_dim=dims would.
    hits = mlx_jina.semantic_search(qs[:, :dims], docs[:, :dims], args.top_k)
    kept = np.mean([len(set(f) & {h["corpus_id"] for h in r}) / len(f) for f, r in zip(full, hits)])
    sizes = [bytes_per_vector(dims, p) for p in ("float32", "int8", "binary")]
    print(f"{dims:>5} {sizes[0]:>10} {sizes[1]:>7} {sizes[2]:>9} {kept:>11.2f}")

print(f"\ntop {args.top_k} at {model.dim} dims:")
for query, ids in zip(queries, full):
    print(f"  {query}: " + " | ".join(corpus[i][:40] for i in ids))
