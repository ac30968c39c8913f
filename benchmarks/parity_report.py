"""The parity table: mlx_jina vs transformers + peft, per layout.

Builds tiny random checkpoints with tests/builders/ (the reference needs the test extra)
and reports the minimum cosine over every task, both prompts and a mixed multilingual
text set. Prints the table; --json writes it.

python benchmarks/parity_report.py [--json parity.json]
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
import mlx_jina  # noqa: E402
from builders.layouts import TASKS, build_base, build_merged, build_mlx_task, build_mlx_unified  # noqa: E402
from builders.reference import reference_embeddings  # noqa: E402
from builders.tokenizers import LLAMA_TOKENIZER, QWEN_TOKENIZER  # noqa: E402
from internals import table, write_json  # noqa: E402
from test_parity import TEXTS, prompt_for  # noqa: E402

LAYOUTS = ("base", "merged", "mlx_task", "mlx_unified")
SPECS = [  # label, backbone, tokenizer, heads, the merged layout's task
    ("small-shaped (Qwen3, GQA 4/2)", "qwen3", QWEN_TOKENIZER, {}, "retrieval"),
    ("small-shaped (Qwen3, 3 q / 1 kv heads)", "qwen3", QWEN_TOKENIZER,
     {"num_attention_heads": 3, "num_key_value_heads": 1, "head_dim": 16}, "retrieval"),
    ("nano-shaped (EuroBERT)", "eurobert", LLAMA_TOKENIZER, {}, "text-matching"),
    ("nano-shaped (EuroBERT, GQA 4/2)", "eurobert", LLAMA_TOKENIZER,
     {"num_attention_heads": 4, "num_key_value_heads": 2}, "text-matching"),
]  # fmt: skip


def min_cos(model, ref_folder, tasks) -> float:
    """The lowest cosine against the reference over `tasks` (None: the folder's own) and both prompts."""
    worst = 1.0
    for task in tasks:
        emb = mlx_jina.load(model, task=task) if task else mlx_jina.load(model)
        for name in ("query", "document"):
            ref = reference_embeddings(ref_folder, TEXTS, task=task, prompt=prompt_for(task, name))
            worst = min(worst, float(np.min(np.sum(emb.encode(TEXTS, prompt_name=name) * ref, axis=1))))
    return worst


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    root, figures = Path(tempfile.mkdtemp()), {}
    for i, (label, arch, tok, heads, merged_task) in enumerate(SPECS):
        base = build_base(root / f"{arch}{i}", arch, tokenizer=tok, r=4, lora_alpha=12,
                          config_overrides={"hidden_size": 64, **heads})  # fmt: skip
        merged = build_merged(root / f"m{i}", base, merged_task)
        task_mlx = build_mlx_task(root / f"c{i}", base, merged_task, dtype="float32")
        unified = build_mlx_unified(root / f"d{i}", base, dtype="float32")
        values = [min_cos(base, base, TASKS), min_cos(merged, merged, [None]),
                  min_cos(task_mlx, task_mlx, [None]), min_cos(unified, base, TASKS)]  # fmt: skip
        figures[label] = dict(zip(LAYOUTS, values, strict=True))
    print("\n".join(table(
        ["backbone (tiny random, float32)", "(a) base + LoRA", "(b) merged", "(c) -mlx per task", "(d) -mlx unified"],
        [[label, *(f"{v:.7f}" for v in row.values())] for label, row in figures.items()])))  # fmt: skip
    if args.json:
        write_json(args.json, figures)


if __name__ == "__main__":
    main()
