"""What `encode` takes as sentences: the habits of sentence-transformers users, checked."""

from typing import Iterable

import numpy as np

from .engine import InputTypeError


def as_texts(sentences, first: int = 0) -> tuple[bool, list[str]]:
    """(whether one string was given, the texts), refusing anything but strings; errors
    count the texts from `first`. Takes what sentence-transformers users pass: a string,
    a list or tuple, a 1-D numpy array of strings, or any other ordered iterable (a
    generator, a pandas Series), read once."""
    single = isinstance(sentences, str)
    if single:
        texts = [sentences]
    elif isinstance(sentences, np.ndarray):
        if sentences.ndim != 1:
            raise InputTypeError(
                f"sentences is a {sentences.ndim}-D numpy array of shape {sentences.shape}; "
                "pass a 1-D array of strings, or a string."
            )
        texts = sentences.tolist()  # numpy strings as Python str
    elif isinstance(sentences, (list, tuple)):
        texts = sentences
    elif isinstance(sentences, (bytes, bytearray, dict, set, frozenset)) or not isinstance(
        sentences, Iterable
    ):
        why = " (unordered: the vectors could not be matched to the texts)" if isinstance(
            sentences, (set, frozenset)) else ""  # fmt: skip
        raise InputTypeError(
            f"sentences must be a string or a list of strings, got {type(sentences).__name__}"
            f"{why}."
        )
    else:
        texts = list(sentences)
    if bad := [i for i, t in enumerate(texts) if not isinstance(t, str)]:
        kind = type(texts[bad[0]]).__name__
        raise InputTypeError(f"sentences[{bad[0] + first}] is {kind}, not a string.")
    return single, list(texts)
