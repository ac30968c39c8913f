"""The one rule for what counts as a text, the same in Python, the CLI and the server.

A text must hold something besides whitespace (an empty one would embed only the prompt,
a vector about nothing) and must be valid Unicode (a lone surrogate such as "\\ud800"
can't be tokenized). Checked before any work starts; the error names the first bad text.
"""

from __future__ import annotations

from collections.abc import Sequence


def text_problem(text: str) -> str | None:
    """What is wrong with `text` as an input to embed, or None."""
    if not text.strip():
        return "is empty" if not text else "holds only whitespace"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"is not valid text: character {e.start} is a lone surrogate ({text[e.start]!r})"
    return None


def check_texts(texts: Sequence[str], name: str = "sentences", first: int = 0) -> None:
    """Raise ValueError naming the first text that breaks the rule: `name[i]`, where i
    counts from `first` (1 for line numbers)."""
    for i, text in enumerate(texts):
        if problem := text_problem(text):
            raise ValueError(f"{name}[{i + first}] {problem}; every text needs some content.")
