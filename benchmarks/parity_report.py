"""The parity table: mlx_jina vs transformers + peft, per layout.

Builds tiny random checkpoints with tests/builders/ (the reference needs the test extra)
and reports the minimum cosine over every task, both prompts and a mixed multilingual
text set. Prints the table; --json writes it.

python benchmarks/parity_report.py [--json parity.json]
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
import mlx_jina  # noqa: E402
from builders.layouts import (  # noqa: E402
    TASKS,
    build_base,
    build_merged,
    build_mlx_task,
    build_mlx_unified,
)
from builders.reference import reference_embeddings  # noqa: E402
from builders.tokenizers import LLAMA_TOKENIZER, QWEN_TOKENIZER  # noqa: E402
from test_parity import TEXTS, prompt_for  # noqa: E402


def min_cos(model, ref_folder, tasks, ref_task, **load_kwargs):
    worst = 1.0
    for task in tasks:
        emb = mlx_jina.load(model, task=task, **load_kwargs) if task else mlx_jina.load(model, **load_kwargs)
        for name in ("query", "document"):
            ours = emb.encode(TEXTS, prompt_name=name)
            ref = reference_embeddings(
                ref_folder, TEXTS, task=ref_task(task), prompt=prompt_for(task, name)
            )
            worst = min(worst, float(np.min(np.sum(ours * ref, axis=1))))
    return worst


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp())
    rows = []
    specs = [
        ("small-shaped (Qwen3, GQA 4/2)", "qwen3", QWEN_TOKENIZER, {}, "retrieval"),
        ("small-shaped (Qwen3, 3 q / 1 kv heads)", "qwen3", QWEN_TOKENIZER,
         {"num_attention_heads": 3, "num_key_value_heads": 1, "head_dim": 16}, "retrieval"),
        ("nano-shaped (EuroBERT)", "eurobert", LLAMA_TOKENIZER, {}, "text-matching"),
        ("nano-shaped (EuroBERT, GQA 4/2)", "eurobert", LLAMA_TOKENIZER,
         {"num_attention_heads": 4, "num_key_value_heads": 2}, "text-matching"),
    ]
    for label, arch, tok, heads, merged_task in specs:
        base = build_base(root / f"{arch}{len(rows)}", arch, tokenizer=tok, r=4, lora_alpha=12,
                          config_overrides={"hidden_size": 64, **heads})
        merged = build_merged(root / f"m{len(rows)}", base, merged_task)
        task_mlx = build_mlx_task(root / f"c{len(rows)}", base, merged_task, dtype="float32")
        unified = build_mlx_unified(root / f"d{len(rows)}", base, dtype="float32")
        rows.append((label, [
            min_cos(base, base, TASKS, lambda t: t),
            min_cos(merged, merged, [None], lambda t: None),
            min_cos(task_mlx, task_mlx, [None], lambda t: None),
            min_cos(unified, base, TASKS, lambda t: t),
        ]))
    print("| backbone (tiny random, float32) | (a) base + LoRA | (b) merged | (c) -mlx per task | (d) -mlx unified |")
    print("|---|---|---|---|---|")
    for label, values in rows:
        print(f"| {label} | " + " | ".join(f"{v:.7f}" for v in values) + " |")
    if args.json:
        layouts = ("base", "merged", "mlx_task", "mlx_unified")
        figures = {label: dict(zip(layouts, values)) for label, values in rows}
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
