"""The decision rule of results/packing.md, as code: applied to the CPU tables there and
to the GPU check's packing section, so the verdict is read off, not argued."""

from __future__ import annotations

PADDED, CONTROL = "padded (mlx_jina)", "padded, fewer passes"
MASK, SPANS = "packed, block mask", "packed, per-text spans"
GAIN = 1.05  # packed median over padded median, on the long-tailed corpus
OVER_CONTROL = 1.03  # packed median over the fewer-passes control's
MIN_COSINE = 0.999  # bf16 packed vectors against mlx_jina's


def _find(rows: dict[str, dict], name: str) -> dict:
    return next(row for key, row in rows.items() if key.startswith(name))


def _faster(rows: dict[str, dict], name: str, bar: float) -> bool:
    """`name`'s median ≥ bar × padded's, and its slowest round beats padded's fastest."""
    got, base = _find(rows, name), _find(rows, PADDED)
    return got["median"] >= bar * base["median"] and got["min"] > base["max"]


def checks(by_corpus: dict[str, dict]) -> dict[str, bool]:
    """The rule's four tests for one model: (a)-(d), plus (a) for the mask and control."""
    long = next(rows for label, rows in by_corpus.items() if label.startswith("long-tailed"))
    short = next(rows for label, rows in by_corpus.items() if label.startswith("queries"))
    spans, control = _find(long, SPANS), _find(long, CONTROL)
    return {
        "a": _faster(long, SPANS, GAIN),
        "b": spans["median"] >= OVER_CONTROL * control["median"],
        "c": _find(short, SPANS)["median"] >= _find(short, PADDED)["median"],
        "d": min(_find(r, SPANS)["cosine_min"] for r in (long, short)) >= MIN_COSINE,
        "mask a": _faster(long, MASK, GAIN),
        "control a": _faster(long, CONTROL, GAIN),
    }


def verdict(measured: dict[str, dict]) -> str:
    """One line: what the rule says about these measurements (every model)."""
    per_model = {name: checks(by_corpus) for name, by_corpus in measured.items()
                 if not ({"error", "skipped"} & set(by_corpus))}  # fmt: skip
    if not per_model:
        return "no measurements to judge"
    shown = "; ".join(
        f"{name}: " + ", ".join(f"{k} {'pass' if ok else 'fail'}" for k, ok in c.items())
        for name, c in per_model.items()
    )
    if all(all(c[k] for k in "abcd") for c in per_model.values()):
        return f"adopt per-text spans ({shown})"
    if all(c["control a"] for c in per_model.values()):
        return f"do not pack; run fewer, fuller padded passes instead ({shown})"
    return f"do not pack ({shown})"
