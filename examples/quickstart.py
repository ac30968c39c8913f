"""Embed a query and two documents with jina-embeddings-v5-text-small and compare them.

python examples/quickstart.py                      # downloads the published model once
python examples/quickstart.py --model ./my-folder  # any local folder in a supported layout
"""

import argparse
import sys
from pathlib import Path

import mlx_jina

sys.path.insert(0, str(Path(__file__).resolve().parent))  # example_cli.py beside it
from example_cli import load_model  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", default="jinaai/jina-embeddings-v5-text-small",
                    help="folder or Hub repo, in any supported layout")
parser.add_argument("--task", default="retrieval", choices=mlx_jina.TASKS,
                    help="adapter to use (default: retrieval)")
args = parser.parse_args()


model = load_model(args.model, args.task)
query = model.encode_query("Which planet is known as the Red Planet?")
documents = model.encode_document(
    [
        "Mars is often called the Red Planet because of the iron oxide on its surface.",
        "Venus is the hottest planet in the solar system.",
    ]
)
for text_score, doc in zip(model.similarity(query, documents)[0], ("Mars", "Venus")):
    print(f"{doc:>6}: {text_score:.4f}")
