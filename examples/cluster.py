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

sys.path.insert(0, str(Path(__file__).resolve().parent))  # example_cli.py beside it
from example_cli import load_model, read_lines  # noqa: E402

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
