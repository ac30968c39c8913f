"""Texts to token ids, cut to a token limit without tokenizing what the cut drops.

`tokenizers` truncation tokenizes the whole text and keeps the rest as `overflowing`
encodings: a 15 MB text took GBs and over a minute, though all but the first few
thousand tokens were thrown away. Here an over-long text is tokenized by prefix: a prefix
of CHARS_PER_TOKEN characters per needed token first, four times longer while it holds
too few tokens that the rest of the text can't change. A token covers at most as many
characters as the vocabulary's longest entry, so no prefix grows past that many per
needed token. The ids kept are those `enable_truncation` gives, special tokens included.

The tokenizers here are set up once and not changed by a call, so threads tokenize at
once, without a lock; `encode_special_tokens` is the one setting a call picks, by picking
the tokenizer.
"""

from __future__ import annotations

import threading

from tokenizers import Encoding, Tokenizer

CHARS_PER_TOKEN = 8  # the first prefix's characters per needed token (text averages ~4)
# The last pre-tokens of a prefix may split differently once the text goes on ("   a" is
# "  " + " a", a prefix ending in "   " one piece): their tokens are not trusted.
UNSTABLE_WORDS = 2


class TextTokenizer:
    """A tokenizer.json's tokenizer, as the Embedder uses it: no padding, no truncation
    setting, cuts done here. The tokenizer given serves plain calls; a copy made on first
    use serves `split_special_tokens`."""

    def __init__(self, tokenizer: Tokenizer):
        self._copies: dict[bool, Tokenizer] = {False: configured(tokenizer, False)}
        self._lock = threading.Lock()  # guards making a copy, never its use
        self.specials = tokenizer.num_special_tokens_to_add(False)
        # tokens >= characters / longest: bytes of a byte-level entry, or characters
        self.longest_token = max(map(len, tokenizer.get_vocab()), default=1) or 1

    def copy(self, split_special_tokens: bool) -> Tokenizer:
        """The tokenizer that reads special-token text as plain text, or as the token."""
        with self._lock:
            plain = self._copies[False]
            if plain.truncation or plain.padding or plain.encode_special_tokens:
                configured(plain, False)  # someone changed Embedder.tokenizer's settings
            if split_special_tokens not in self._copies:
                self._copies[True] = configured(Tokenizer.from_str(plain.to_str()), True)
            return self._copies[split_special_tokens]

    def encode(
        self, texts: list[str], max_length: int, split_special_tokens: bool
    ) -> tuple[list[list[int]], list[int]]:
        """(ids per text with special tokens, at most `max_length` each; the indices of the
        texts that were longer and were cut)."""
        tokenizer = self.copy(split_special_tokens)
        budget = max(max_length - self.specials, 0)
        encodings: list[Encoding | None] = [None] * len(texts)
        cut: set[int] = set()
        chars = (budget + 16) * CHARS_PER_TOKEN
        todo = list(range(len(texts)))
        while todo:
            batch = tokenizer.encode_batch([texts[i][:chars] for i in todo], add_special_tokens=False)
            again = []
            for i, enc in zip(todo, batch, strict=True):
                whole = len(texts[i]) <= chars
                if len(enc.ids) > budget and (
                    whole or trusted(enc) > budget or chars >= budget * self.longest_token
                ):
                    enc.truncate(budget)
                    cut.add(i)
                elif not whole:
                    again.append(i)
                    continue
                encodings[i] = enc
            todo, chars = again, chars * 4
        ids = [tokenizer.post_process(enc).ids for enc in encodings]
        # Special tokens alone may exceed a tiny max_length; enable_truncation cuts them too.
        ids = [row[:max_length] for row in ids]
        return ids, sorted(cut)


def configured(tokenizer: Tokenizer, split_special_tokens: bool) -> Tokenizer:
    tokenizer.no_padding()
    tokenizer.no_truncation()
    tokenizer.encode_special_tokens = split_special_tokens
    return tokenizer


def trusted(enc: Encoding) -> int:
    """How many leading tokens of a prefix's encoding the rest of the text can't change."""
    words = enc.word_ids
    last = next((w for w in reversed(words) if w is not None), None)
    if last is None:
        return 0
    cutoff = last - (UNSTABLE_WORDS - 1)
    return next((k for k, w in enumerate(words) if w is not None and w >= cutoff), len(words))
