"""k-means on clustering-adapter embeddings, in numpy (no scikit-learn).

    python examples/cluster.py --k 3                    # built-in sample texts
    python examples/cluster.py --k 5 --input lines.txt  # one text a line

Prints each cluster with its texts, closest to the centre first.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

import mlx_jina

SAMPLES = [
    "How do I reset my password?", "I forgot my login password.", "Password reset link expired.",
    "The pasta needs ten minutes in salted water.", "Add garlic and olive oil to the pan.",
    "Bake the bread at 220 degrees for half an hour.",
    "The striker scored twice in the second half.", "The match ended in a draw after extra time.",
    "She won the marathon in record time.",
]

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--k", type=int, default=3, help="number of clusters")
parser.add_argument("--input", type=Path, help="text file, one text a line")
parser.add_argument("--model", default="jinaai/jina-embeddings-v5-text-small",
                    help="folder or Hub repo holding the clustering adapter")
parser.add_argument("--seed", type=int, default=0, help="random seed of the k-means++ start")
parser.add_argument("--iterations", type=int, default=50, help="most k-means rounds")
args = parser.parse_args()


def load_model(model: str, task: str) -> mlx_jina.Embedder:
    """`model` for `task`, or exit with one line: a merged per-task folder holds only its
    own task, and the error names it; a base repo or a unified -mlx folder holds them all."""
    try:
        return mlx_jina.load(model, task=task)
    except (ValueError, OSError) as e:
        hint = "" if "task" not in str(e) else (
            f" This script needs the {task} adapter: pass --model a base repo or a unified "
            f"-mlx folder (they hold every adapter), or a {task} model.")
        sys.exit(f"{Path(sys.argv[0]).name}: error: {' '.join(f'{e}{hint}'.split())}")


def read_lines(path: Path) -> list[str]:
    """The non-blank lines of a UTF-8 text file, stripped, or exit with one line."""
    try:
        return [t.strip() for t in path.read_text(encoding="utf-8").splitlines() if t.strip()]
    except (OSError, UnicodeDecodeError) as e:
        sys.exit(f"{Path(sys.argv[0]).name}: error: can't read {path}: {e}")


texts = SAMPLES
if args.input:
    texts = read_lines(args.input)
if not 1 <= args.k <= len(texts):
    parser.error(f"--k {args.k} must be from 1 to the number of texts ({len(texts)}).")

model = load_model(args.model, "clustering")
x = model.encode(texts)  # unit rows, so cosine = dot product
rng = np.random.default_rng(args.seed)

# k-means++ seeding: each new centre is drawn with probability ~ squared distance.
centres = x[[rng.integers(len(x))]]
while len(centres) < args.k:
    d2 = np.maximum(((x[:, None] - centres[None]) ** 2).sum(-1).min(1), 0)
    p = d2 / d2.sum() if d2.sum() > 0 else None  # all points taken: draw uniformly
    centres = np.vstack([centres, x[rng.choice(len(x), p=p)]])
for _ in range(args.iterations):
    assign = (x @ centres.T).argmax(1)
    new = np.stack([x[assign == c].mean(0) if (assign == c).any() else centres[c]
                    for c in range(args.k)])
    new /= np.linalg.norm(new, axis=1, keepdims=True)  # spherical k-means: centres on the sphere
    if np.allclose(new, centres):
        break
    centres = new

for c in range(args.k):
    members = np.flatnonzero(assign == c)
    members = members[np.argsort(-(x[members] @ centres[c]))]
    print(f"cluster {c} ({len(members)} texts)")
    for i in members:
        print(f"  {x[i] @ centres[c]:.4f}  {texts[i]}")
