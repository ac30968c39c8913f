"""Over-long texts: cut by prefix to the token limit, as tokenizers' own truncation cuts
them, without tokenizing what the cut drops and without a lock other texts wait on.

Run: python -m pytest tests/test_long_inputs.py -q
"""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest
from tokenizers import Tokenizer

import mlx_jina
from mlx_jina.encoding.tokenizing import CHARS_PER_TOKEN, TextTokenizer

HUGE = ("The quick brown fox jumps over the lazy dog, again and again. " * 250_000)[:15_000_000]
PIECES = ["hello", "world", "   ", "\n\n", "机器学习", "ünïcode", "12345", "<|endoftext|>",
          "----", "a", " ", "x" * 300, "é"]  # fmt: skip


@pytest.fixture(params=["tiny_tokenizer", "tiny_tokenizer_eos", "tiny_tokenizer_bos_eos",
                        "qwen_tokenizer"])  # fmt: skip
def tokenizer_file(request):
    return request.getfixturevalue(request.param)


def test_cut_equals_the_tokenizers_own_truncation(tokenizer_file):
    """For random texts (spaces, CJK, special-token text, 300-letter words) and limits,
    the ids and the cut flag equal `enable_truncation`'s, special tokens included."""
    reference = Tokenizer.from_file(str(tokenizer_file))
    ours = TextTokenizer(reference)
    rng = random.Random(0)
    for _ in range(150):
        text = "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 400)))
        max_length = rng.choice([ours.specials + 1, 5, 17, 64, 100, 1000])
        split = rng.random() < 0.5
        reference.encode_special_tokens = split
        reference.enable_truncation(max_length)
        want = reference.encode(text)
        ids, cut = ours.encode([text], max_length, split)
        assert (ids[0], bool(cut)) == (want.ids, bool(want.overflowing)), (max_length, text[:60])


def left_cut(reference: Tokenizer, text: str, prompt_chars: int, max_length: int) -> list[int]:
    """TEI's Left cut from the whole text's encoding: the prompt's tokens, then the last
    tokens that fit, then the special tokens around them."""
    plain = reference.encode(text, add_special_tokens=False)
    full = reference.encode(text).ids
    at = next(k for k in range(len(full)) if full[k : k + len(plain.ids)] == plain.ids)
    before, after = full[:at], full[at + len(plain.ids) :]
    budget = max(max_length - len(before) - len(after), 0)
    n = sum(end <= prompt_chars for _, end in plain.offsets)
    if len(plain.ids) <= budget or budget <= n:  # uncut, or the prompt fills the budget
        return (before + plain.ids[:budget] + after)[:max_length]
    kept = plain.ids[:n] + plain.ids[len(plain.ids) - (budget - n) :]
    return (before + kept + after)[:max_length]


def test_left_cut_keeps_the_prompt_and_the_end(tokenizer_file):
    """direction="left" (TEI's truncation_direction "Left"): for random texts, prompts and
    limits, the ids are the whole text's tokens with those after the prompt cut."""
    reference = Tokenizer.from_file(str(tokenizer_file))
    ours = TextTokenizer(Tokenizer.from_file(str(tokenizer_file)))
    rng = random.Random(1)
    differ = 0
    for _ in range(150):
        prompt = rng.choice(["", "Query: ", "Document: "])
        text = prompt + "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 400)))
        max_length = rng.choice([ours.specials + 1, 5, 17, 64, 100, 1000])
        split = rng.random() < 0.5
        reference.encode_special_tokens = split
        ids, cut = ours.encode([text], max_length, split, "left", len(prompt))
        assert ids[0] == left_cut(reference, text, len(prompt), max_length), (max_length, text[:60])
        right, right_cut = ours.encode([text], max_length, split)
        assert cut == right_cut and (cut or ids == right)
        differ += ids != right
    assert differ > 50  # cuts that kept other tokens than the right cut


def test_a_huge_text_cut_from_the_left_is_tokenized_by_a_bounded_suffix(model):
    """The left cut of a 15 MB text tokenizes its prompt's prefix and a suffix, never the
    whole; the ids are those of its last 20,000 characters cut the same way."""
    spy, prompt = recording(model), "Query: "
    ids, cut = model.tokenize_and_cut([prompt + HUGE], 512, direction="left", prompt_chars=7)
    assert cut == [0] and len(ids[0]) == 512
    assert max(spy.lengths) <= (512 + 16) * CHARS_PER_TOKEN
    end = HUGE[HUGE.index("The quick", len(HUGE) - 20_000) :]  # starts as HUGE does
    tail, _ = model.tokenize_and_cut([prompt + end], 512, direction="left", prompt_chars=7)
    assert ids == tail
    right = model.tokenize_and_cut([prompt + HUGE], 512)[0][0]
    assert ids[0][:2] == right[:2] and ids[0][2:] != right[2:]  # "Query", ":"
    assert HUGE.endswith(model.tokenizer.decode(ids[0][-20:]))
    for bad in ({"direction": "Left"}, {"prompt_chars": -1}, {"prompt_chars": 2.0}):
        with pytest.raises(ValueError, match="'right' or 'left'"):
            model.tokenize_and_cut(["a"], **bad)


class Recording:
    """A tokenizer that records the length of each text it is given, and holds texts
    longer than `hold_over` characters until `release` is set."""

    def __init__(self, tokenizer: Tokenizer, hold_over: int | None = None):
        self.tokenizer, self.hold_over = tokenizer, hold_over
        self.lengths: list[int] = []
        self.entered, self.release = threading.Event(), threading.Event()

    def encode_batch(self, texts, **kwargs):
        self.lengths += [len(t) for t in texts]
        if self.hold_over is not None and max(map(len, texts)) > self.hold_over:
            self.entered.set()
            assert self.release.wait(60)
        return self.tokenizer.encode_batch(texts, **kwargs)

    def encode(self, text, **kwargs):
        self.lengths.append(len(text))
        return self.tokenizer.encode(text, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


def recording(model: mlx_jina.Embedder, hold_over: int | None = None) -> Recording:
    texts = model._text_tokenizer
    spy = Recording(texts.copy(False), hold_over)
    texts._copies[False] = spy
    return spy


@pytest.fixture
def model(tiny_qwen_base):
    return mlx_jina.load(tiny_qwen_base, task="retrieval")


def test_a_huge_text_is_tokenized_by_a_bounded_prefix(model):
    """A 15 MB text with truncation took 2.5 GB and over a minute: all of it was tokenized
    and all but max_length tokens thrown away. Now the tokenizer sees a prefix of at most
    CHARS_PER_TOKEN characters per kept token; the cut is warned about with counts, and the
    vector is that of the text's first few thousand characters."""
    spy = recording(model)
    with pytest.warns(UserWarning, match=r"1 of 2 inputs were longer than max_length=512"):
        got = model.encode(["short", HUGE], max_length=512)
    assert max(spy.lengths) <= (512 + 16) * CHARS_PER_TOKEN
    with pytest.warns(UserWarning):
        want = model.encode(HUGE[:20_000], max_length=512)
    np.testing.assert_allclose(got[1], want, atol=1e-6)
    with pytest.raises(ValueError, match=r"1 of 1 inputs are longer than max_length=512"):
        model.encode(HUGE, max_length=512, truncate=False)


def test_tokenizing_takes_no_lock_other_texts_wait_on(model):
    """A huge text was tokenized under the Embedder's tokenizer lock, so every other
    request's texts waited (76 s in the server). With the huge text held inside the
    tokenizer, a short text is tokenized from another thread."""
    spy = recording(model, hold_over=1000)
    held = threading.Thread(target=model.tokenize, args=([HUGE], 512))
    held.start()
    assert spy.entered.wait(60)
    short: dict = {}
    other = threading.Thread(target=lambda: short.update(ids=model.tokenize(["hello"])))
    other.start()
    other.join(60)
    done_while_held = not other.is_alive()
    spy.release.set()
    held.join(60)
    other.join(60)
    assert done_while_held
    assert short["ids"] == [model.tokenizer.encode("hello").ids]
