"""gpu_check.json (everything measured) and gpu_check.md (the tables)."""

import json
from pathlib import Path

from internals import write_report


def _gib(row: dict, n: str) -> str:
    cell = row.get("long", {}).get(n)
    if not cell:
        return "-"
    if "error" in cell:
        return "failed"
    gib = cell["peak_gib"]
    mem = f"{gib:.2f} GiB" if gib >= 1 else f"{gib * 1024:.0f} MiB"
    return f"{mem} / {cell['seconds']:.2f} s"


def mlx_table(name: str, section: dict, lengths: list[str]) -> list[str]:
    head = "| weights | tokens/s | FLOP/s ÷ bf16 matmul | query p50 / p99 ms | load s |"
    head += "".join(f" peak mem / time, {n} tokens |" for n in lengths)
    lines = [f"### mlx_jina, {name}", "", head, "|---" * (5 + len(lengths)) + "|"]
    for label, row in section.items():
        if "skipped" in row or "error" in row:
            lines.append(f"| {label} | {row.get('skipped') or row.get('error')} |")
            continue
        frac = row.get("matmul_fraction")
        lines.append(
            f"| {label} | {row['tokens_per_s']:,.0f} | "
            f"{'-' if frac is None else f'{frac:.1%}'} | "
            f"{row['p50_ms']:.2f} / {row['p99_ms']:.2f} | {row['load_s']:.1f} |"
            + "".join(f" {_gib(row, n)} |" for n in lengths)
        )
    return lines + [""]


def markdown(result: dict) -> str:
    env = result["environment"]
    lines = [
        f"# GPU check ({result['mode']})",
        "",
        (
            f"MLX {env['mlx']} on `{env['default_device']}` "
            f"({env.get('device_info', {})}); torch {env.get('torch')} "
            f"(CUDA: {env.get('torch_cuda')}, {env.get('torch_device', 'no GPU')}); "
            f"Python {env['python']}. "
            f"Total {result['seconds']:.0f} s of a {result['budget_s']:.0f} s budget."
        ),
        "",
        "mlx-embeddings: "
        + (env["mlx_embeddings"] or "not installed on this machine, so no row for it."),
        "",
    ]
    tests = result.get("gpu_tests", {})
    lines += ["## GPU tests (`pytest -m gpu tests/test_gpu.py`)", "",
              f"`{tests.get('summary', tests.get('skipped', '-'))}`", ""]
    mm = result.get("matmul", {})
    if "tflops" in mm:
        lines += [f"MLX bf16 matmul ({mm['n']}²): {mm['tflops']:.3g} TFLOP/s measured.", ""]
    for name, section in result.get("mlx", {}).items():
        lengths = sorted({n for r in section.values() for n in r.get("long", {})}, key=int)
        lines += mlx_table(name, section, lengths)
    lines += ["### transformers on torch, same weights and batches", "",
              "| model | device / dtype | tokens/s | vs mlx_jina | cosine min / mean |",
              "|---|---|---|---|---|"]
    for name, row in result.get("torch", {}).items():
        if "tokens_per_s" not in row:
            lines.append(f"| {name} | {row.get('skipped') or row.get('error')} |")
            continue
        lines.append(
            f"| {name} | {row['device']} / {row['dtype']} | {row['tokens_per_s']:,.0f} | "
            f"mlx_jina {row['mlx_ratio']:.2f}x | "
            f"{row['cosine_min']:.6f} / {row['cosine_mean']:.6f} |"
        )
    lines += ["", "## Notes", ""] + [f"- {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"


def write(out: Path, result: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_report(out / "gpu_check.json", json.dumps(result, indent=2, default=str) + "\n")
    write_report(out / "gpu_check.md", markdown(result))
