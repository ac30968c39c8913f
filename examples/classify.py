"""Few-shot classification: nearest label centroid of classification-adapter embeddings.

    python examples/classify.py "The battery died after two days." "Fast shipping, works great"
    python examples/classify.py --train labeled.tsv "some text"   # lines: label<TAB>text

Prints one line per text: the label, its cosine score, the text.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

import mlx_jina

sys.path.insert(0, str(Path(__file__).resolve().parent))  # example_cli.py beside it
from example_cli import load_model, read_lines  # noqa: E402

EXAMPLES = [
    ("positive", "I love it, works perfectly and arrived early."),
    ("positive", "Excellent quality, I would buy this again."),
    ("positive", "Great value for the price, very happy."),
    ("negative", "It broke after a week and support never answered."),
    ("negative", "Terrible quality, a waste of money."),
    ("negative", "Arrived damaged and the refund took a month."),
]

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("texts", nargs="*", help="texts to label (default: two samples)",
                    default=["The battery died after two days.", "Fast shipping, works great"])
parser.add_argument("--train", type=Path, help="labeled examples, one 'label<TAB>text' a line")
parser.add_argument("--model", default="jinaai/jina-embeddings-v5-text-small",
                    help="folder or Hub repo holding the classification adapter")
args = parser.parse_args()


examples = EXAMPLES
if args.train:
    lines = [line.split("\t", 1) for line in read_lines(args.train, strip=False) if line.strip()]
    if bad := [i + 1 for i, parts in enumerate(lines) if len(parts) != 2]:
        parser.error(f"{args.train} line {bad[0]} is not 'label<TAB>text'.")
    examples = [(label.strip(), text) for label, text in lines]

model = load_model(args.model, "classification")
labels = sorted({label for label, _ in examples})
train = model.encode([text for _, text in examples])
# One centroid per label: the normalized mean of its examples.
centroids = np.stack([train[[lab == label for lab, _ in examples]].mean(0) for label in labels])
centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)

scores = model.encode(args.texts) @ centroids.T
for text, row in zip(args.texts, scores):
    print(f"{labels[row.argmax()]}\t{row.max():.4f}\t{text}")
