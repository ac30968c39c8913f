"""Texts to token ids, cut to a token limit without tokenizing what the cut drops.

`tokenizers` truncation tokenizes the whole text and keeps the rest as `overflowing`
encodings: a 15 MB text took GBs and over a minute, though all but the first few
thousand tokens were thrown away. Here an over-long text is tokenized by prefix: a prefix
of CHARS_PER_TOKEN characters per needed token first, four times longer while it holds
too few tokens that the rest of the text can't change. A token covers at most as many
characters as the vocabulary's longest entry, so no prefix grows past that many per
needed token. The ids kept are those `enable_truncation` gives, special tokens included.

A cut from the left (TEI's `truncation_direction: "Left"`) keeps the END of the text, and
still its prompt and special tokens: the tokens of the whole text's encoding that lie
inside the prompt, then as many of its last tokens as fit. Those last tokens come from a
suffix, grown the same way, whose first words are not trusted.

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
        self,
        texts: list[str],
        max_length: int,
        split_special_tokens: bool,
        direction: str = "right",
        prompt_chars: int = 0,
    ) -> tuple[list[list[int]], list[int]]:
        """(ids per text with special tokens, at most `max_length` each; the indices of the
        texts that were longer and were cut). `direction` "left" cuts the start of a text
        instead, after its first `prompt_chars` characters (its prompt), which it keeps."""
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
        if direction == "left":
            for i in cut:
                ids[i] = self.cut_left(tokenizer, texts[i], encodings[i], budget, prompt_chars)
        # Special tokens alone may exceed a tiny max_length; enable_truncation cuts them too.
        ids = [row[:max_length] for row in ids]
        return ids, sorted(cut)

    def cut_left(
        self, tokenizer: Tokenizer, text: str, head: Encoding, budget: int, prompt_chars: int
    ) -> list[int]:
        """The ids of an over-long text cut from the left: the prompt's tokens (those of
        `head`, its first `budget` tokens, that end inside the prompt), then the text's last
        tokens, with the special tokens around them."""
        prompt = [t for t, (_, end) in zip(head.ids, head.offsets) if end <= prompt_chars]
        keep = budget - len(prompt)
        if keep <= 0:  # the prompt alone fills the budget: the right cut is all there is
            return tokenizer.post_process(head).ids
        before, after = special_ids(tokenizer)
        return before + prompt + self.last_ids(tokenizer, text, keep, prompt_chars) + after

    def last_ids(self, tokenizer: Tokenizer, text: str, keep: int, prompt_chars: int) -> list[int]:
        """The last `keep` ids of the text's encoding (no special tokens), tokenizing a suffix
        that grows while too few of its tokens are ones the text before it can't change."""
        chars = (keep + 16) * CHARS_PER_TOKEN
        while True:
            start = len(text) - chars
            if start <= prompt_chars:  # the suffix would reach the prompt: all of it
                return tokenizer.encode(text, add_special_tokens=False).ids[-keep:]
            enc = tokenizer.encode(text[start:], add_special_tokens=False)
            if trusted_tail(enc) >= keep or chars >= keep * self.longest_token:
                return enc.ids[-keep:]
            chars *= 4


def configured(tokenizer: Tokenizer, split_special_tokens: bool) -> Tokenizer:
    tokenizer.no_padding()
    tokenizer.no_truncation()
    tokenizer.encode_special_tokens = split_special_tokens
    return tokenizer


def special_ids(tokenizer: Tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the post-processor puts before and after a text's tokens."""
    enc = tokenizer.post_process(tokenizer.encode("a", add_special_tokens=False))
    inside = [k for k, special in enumerate(enc.special_tokens_mask) if not special]
    if not inside:  # "a" gave no token of its own: all the specials go in front
        return enc.ids, []
    return enc.ids[: inside[0]], enc.ids[inside[-1] + 1 :]


def trusted_tail(enc: Encoding) -> int:
    """How many trailing tokens of a suffix's encoding the text before it can't change."""
    words = enc.word_ids
    first = next((w for w in words if w is not None), None)
    if first is None:
        return 0
    cutoff = first + UNSTABLE_WORDS
    start = next((k for k, w in enumerate(words) if w is not None and w >= cutoff), len(words))
    return len(words) - start


def trusted(enc: Encoding) -> int:
    """How many leading tokens of a prefix's encoding the rest of the text can't change."""
    words = enc.word_ids
    last = next((w for w in reversed(words) if w is not None), None)
    if last is None:
        return 0
    cutoff = last - (UNSTABLE_WORDS - 1)
    return next((k for k, w in enumerate(words) if w is not None and w >= cutoff), len(words))
