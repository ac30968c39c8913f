"""The other three adapters of one multitask model: zero-shot labels (classification),
near-duplicates (text matching) and groups (clustering).

Each takes texts and the model; the index hands them its stored texts. A model loaded
for one task only has no other adapter: the error names the fix (load the base or a
unified -mlx repo, which the index then loads with `multitask=True`).
"""

from __future__ import annotations

import numpy as np

from ..encoding.texts import check_texts
from ..tasks import CLASSIFICATION, CLUSTERING, TEXT_MATCHING


def encode_for(model, texts: list[str], task: str, truncate_dim: int | None = None) -> np.ndarray:
    """Document vectors of `texts` with `task`'s adapter (all symmetric tasks use the
    document prompt for every input)."""
    if not getattr(model, "multitask", False) and model.task != task:
        raise ValueError(
            f"The model {model.source} was loaded for {model.task!r} only; {task} needs its "
            "adapter. Use a model that holds all four adapters (the base repo or a unified "
            "-mlx repo); the index loads it with multitask=True."
        )
    return model.encode(texts, task=task, prompt_name="document", truncate_dim=truncate_dim)


def classify(model, texts: list[str], labels: list[str]) -> list[dict]:
    """Zero-shot labels: each text's cosine with each label, through the classification
    adapter. Returns per text `{"label": best, "scores": {label: cosine}}`, labels in
    the order given."""
    if isinstance(texts, str):
        texts = [texts]
    check_texts(texts, "texts")
    if isinstance(labels, str) or len(labels) < 2:
        raise ValueError(
            f"labels={labels!r}; pass at least two candidate labels (a list of strings)."
        )
    check_texts(labels, "labels")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels={labels!r} repeats a label; pass each once.")
    vectors = encode_for(model, [*texts, *labels], CLASSIFICATION)
    scores = vectors[: len(texts)] @ vectors[len(texts) :].T  # (texts, labels)
    return [
        {"label": labels[int(np.argmax(row))],
         "scores": {label: round(float(s), 6) for label, s in zip(labels, row)}}
        for row in scores
    ]  # fmt: skip


def near_duplicates(
    model, texts: list[str], threshold: float = 0.95
) -> list[tuple[int, int, float]]:
    """Pairs (i, j, cosine), i < j, whose text matching vectors are at least `threshold`
    alike, most alike first."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold={threshold!r}; use a cosine in (0, 1].")
    check_texts(texts, "texts")
    vectors = encode_for(model, list(texts), TEXT_MATCHING)
    pairs = []
    for start in range(0, len(texts), 1024):  # a block of rows at a time: bounded memory
        block = vectors[start : start + 1024] @ vectors.T
        for i, j in zip(*np.nonzero(block >= threshold)):
            if start + i < j:
                pairs.append((int(start + i), int(j), float(block[i, j])))
    return sorted(pairs, key=lambda p: (-p[2], p[0], p[1]))


def clusters(model, texts: list[str], k: int, *, iterations: int = 50, seed: int = 0) -> list[int]:
    """A group number per text: k-means (cosine, k-means++ start) over clustering vectors."""
    check_texts(texts, "texts")
    if not isinstance(k, int) or not 1 <= k <= len(texts):
        raise ValueError(f"k={k!r}; use an integer from 1 to the number of texts ({len(texts)}).")
    x = encode_for(model, list(texts), CLUSTERING).astype(np.float64)
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        distance = np.clip(1 - np.max(x @ np.array(centres).T, axis=1), 0, None)
        total = distance.sum()
        pick = rng.choice(len(x), p=distance / total) if total > 0 else rng.integers(len(x))
        centres.append(x[pick])
    centres = np.array(centres)
    labels = np.full(len(x), -1)
    for _ in range(iterations):
        new = np.argmax(x @ centres.T, axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        for c in range(k):
            members = x[labels == c]
            if len(members):
                mean = members.sum(axis=0)
                centres[c] = mean / max(np.linalg.norm(mean), 1e-12)
    return [int(c) for c in labels]
