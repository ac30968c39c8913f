"""Local RAG retrieval over a folder of .txt/.md files: binary search, int8 rescoring.

    python examples/rag.py --docs ~/notes "How do I rotate the API keys?"

The first run chunks every file (token windows with overlap), embeds the chunks and
stores 1-bit vectors (search) and int8 vectors (rescoring) in --index. Later runs
re-embed only new or changed files. Then each query prints its best passages.
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

import mlx_jina
from mlx_jina.atomic import replacing

sys.path.insert(0, str(Path(__file__).resolve().parent))  # example_cli.py beside it
from example_cli import load_model  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("queries", nargs="*", help="questions to answer from the documents")
parser.add_argument("--docs", type=Path, required=True, help="folder of .txt / .md files")
parser.add_argument("--index", type=Path, help="index folder (default: DOCS/.mlx_jina_index)")
parser.add_argument("--model", default="jinaai/jina-embeddings-v5-text-small",
                    help="folder or Hub repo holding the retrieval adapter")
parser.add_argument("--chunk-tokens", type=int, default=512, help="tokens per chunk (default: 512)")
parser.add_argument("--overlap", type=int, default=64, help="tokens shared by neighbouring chunks")
parser.add_argument("--truncate-dim", "--dims", dest="truncate_dim", type=int,
                    help="Matryoshka size (default: full)")
parser.add_argument("--top-k", type=int, default=5, help="passages per query")
parser.add_argument("--rescore-multiplier", type=int, default=4,
                    help="rescore the best top-k x this binary hits with the int8 vectors")
args = parser.parse_args()
if not 0 <= args.overlap < args.chunk_tokens:
    parser.error(f"--overlap {args.overlap} must be at least 0 and below --chunk-tokens.")


index = args.index or args.docs / ".mlx_jina_index"
# The index is replaced as a whole when written, so that its three files always agree:
# never a folder that holds anything else.
INDEX_FILES = {"manifest.json", "binary.safetensors", "int8.safetensors"}
foreign = sorted({p.name for p in index.iterdir()} - INDEX_FILES) if index.is_dir() else []
if foreign:
    parser.error(f"--index {index} holds other files ({', '.join(foreign[:5])}); "
                 "pass an empty or new folder.")

model = load_model(args.model, "retrieval")
# Leave room in the model's context for the "Document: " prompt and special tokens.
chunk_tokens = min(args.chunk_tokens, model.max_length - 32)
settings = {"chunk_tokens": chunk_tokens, "overlap": args.overlap}
fp_binary = mlx_jina.fingerprint(model, truncate_dim=args.truncate_dim, precision="ubinary")
fp_int8 = mlx_jina.fingerprint(model, truncate_dim=args.truncate_dim, precision="int8")


def chunk(text: str) -> list[tuple[int, int]]:
    """Character spans of windows of `chunk_tokens` tokens, `overlap` tokens apart."""
    model.tokenizer.no_truncation()  # encode() leaves its own max_length set
    offsets = model.tokenizer.encode(text, add_special_tokens=False).offsets
    step = chunk_tokens - args.overlap
    starts = range(0, max(len(offsets) - args.overlap, 1), step)
    return [(offsets[s][0], offsets[min(s + chunk_tokens, len(offsets)) - 1][1]) for s in starts
            if offsets]


# Reuse the stored vectors of unchanged files, if the index was built the same way.
old = {"files": {}}
try:
    old = json.loads((index / "manifest.json").read_text())
    old_binary = mlx_jina.load_embeddings(index / "binary.safetensors", fp_binary).embeddings
    old_int8 = mlx_jina.load_embeddings(index / "int8.safetensors", fp_int8).embeddings
    if old.get("settings") != settings:
        raise ValueError(f"chunking changed from {old.get('settings')} to {settings}")
except (FileNotFoundError, ValueError) as e:
    if old["files"]:
        print(f"rebuilding the index: {e}")
    old = {"files": {}}

files, binary, int8, embedded, row = {}, [], [], 0, 0
for path in sorted(p for p in args.docs.rglob("*") if p.suffix in (".txt", ".md")):
    name, text = str(path.relative_to(args.docs)), path.read_text(encoding="utf-8")
    digest = hashlib.sha256(text.encode()).hexdigest()
    entry = old["files"].get(name)
    if entry and entry["sha256"] == digest:
        rows = slice(entry["first"], entry["first"] + len(entry["spans"]))
        binary.append(old_binary[rows])
        int8.append(old_int8[rows])
        spans = entry["spans"]
    else:
        spans = chunk(text)
        vectors = model.encode_document([text[a:b] for a, b in spans],
                                        truncate_dim=args.truncate_dim)
        binary.append(mlx_jina.quantize_embeddings(vectors, "ubinary"))
        # Fixed ranges (not calibrated on this corpus): unchanged rows stay valid forever.
        int8.append(mlx_jina.quantize_embeddings(vectors, "int8"))
        embedded += 1
    files[name] = {"sha256": digest, "first": row, "spans": spans}
    row += len(spans)

if not files:
    parser.error(f"No .txt or .md files under {args.docs}.")
binary, int8 = np.concatenate(binary), np.concatenate(int8)
# Write all three beside the index, then swap the folder in: a kill at any moment leaves
# the old index or the new one, never new vectors under an old manifest.
with replacing(index.resolve()) as new:
    mlx_jina.save_embeddings(new / "binary.safetensors", binary, fp_binary)
    mlx_jina.save_embeddings(new / "int8.safetensors", int8, fp_int8)
    (new / "manifest.json").write_text(json.dumps({"settings": settings, "files": files}))
removed = len(set(old["files"]) - set(files))
print(f"indexed {len(files)} files: {embedded} embedded, {len(files) - embedded} unchanged, "
      f"{removed} removed; {len(binary)} chunks in {index}")

passages = [(name, a, b) for name, f in files.items() for a, b in f["spans"]]
if args.queries:
    q = model.encode_query(args.queries, truncate_dim=args.truncate_dim)
    hits = mlx_jina.semantic_search(q, binary, args.top_k, corpus_precision="ubinary",
                                    rescore_embeddings=int8,
                                    rescore_multiplier=args.rescore_multiplier)
    for query, results in zip(args.queries, hits):
        print(f"\nquery: {query}")
        for rank, hit in enumerate(results, 1):
            name, a, b = passages[hit["corpus_id"]]
            text = (args.docs / name).read_text(encoding="utf-8")[a:b]
            print(f"{rank:>3}. {hit['score']:.4f}  {name} [chars {a}-{b}]")
            print("     " + " ".join(text.split())[:200])
