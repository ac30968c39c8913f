"""Split a file's text into passages of at most `budget` tokens, cut at paragraph or line
boundaries, neighbours sharing about `overlap` tokens.

A line longer than the budget (minified code, a log line) is cut into token windows; no
text is dropped, every character lies in at least one chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Chunk:
    start: int  # character offsets into the text
    end: int
    first_line: int  # 1-based, inclusive
    last_line: int


@dataclass(frozen=True)
class _Piece:
    start: int
    end: int
    line: int
    tokens: int
    paragraph_end: bool  # a blank line follows: the best place to cut


def chunk_text(
    text: str, count_tokens: Callable[[list[str]], list[int]],
    token_spans: Callable[[str], list[tuple[int, int]]], budget: int, overlap: int,
) -> list[Chunk]:  # fmt: skip
    """Chunks of `text`; `count_tokens(lines)` gives each line's token count, and
    `token_spans(line)` a line's token character spans: asked only of lines over the
    budget, which are cut between tokens (counting is cheaper than finding offsets)."""
    if not 0 <= overlap < budget:
        raise ValueError(f"overlap={overlap} must be at least 0 and below the budget {budget}.")
    pieces = _pieces(text, count_tokens, token_spans, budget)
    chunks, first = [], 0
    while first < len(pieces):
        last, total = first, pieces[first].tokens
        while last + 1 < len(pieces) and total + pieces[last + 1].tokens <= budget:
            last += 1
            total += pieces[last].tokens
        if last + 1 < len(pieces):
            # Prefer ending at a paragraph, if that keeps at least half the budget.
            ends = [i for i in range(first, last) if pieces[i].paragraph_end]
            if ends and sum(p.tokens for p in pieces[first : ends[-1] + 1]) >= budget // 2:
                last = ends[-1]
        a, b = pieces[first], pieces[last]
        chunks.append(Chunk(a.start, b.end, a.line, b.line))
        if last + 1 >= len(pieces):
            break
        # The next chunk repeats the last pieces that fit in `overlap` (and leave room for
        # a new piece), and always advances.
        nxt, shared = last + 1, 0
        room = min(overlap, budget - pieces[last + 1].tokens)
        while nxt - 1 > first and shared + pieces[nxt - 1].tokens <= room:
            nxt -= 1
            shared += pieces[nxt].tokens
        first = nxt
    return chunks


def _pieces(text: str, count_tokens, token_spans, budget: int) -> list[_Piece]:
    """The text's non-blank lines, long ones cut into windows of `budget` tokens."""
    lines, starts, pos = text.splitlines(keepends=True), [], 0
    for line in lines:
        starts.append(pos)
        pos += len(line)
    # Line ends are not counted: a window holding only "\n" would be an empty chunk.
    lines = [line.rstrip("\r\n") for line in lines]
    keep = [i for i, line in enumerate(lines) if line.strip()]
    counts = count_tokens([lines[i] for i in keep]) if keep else []
    pieces = []
    for n, (i, count) in enumerate(zip(keep, counts)):
        blank_next = n + 1 < len(keep) and keep[n + 1] > i + 1
        start, end = starts[i], starts[i] + len(lines[i])
        if count <= budget:  # the whole line is one piece (a line of no tokens counts 1)
            pieces.append(_Piece(start, end, i + 1, max(count, 1), blank_next))
            continue
        tokens = token_spans(lines[i])
        for w in range(0, len(tokens), budget):
            window = tokens[w : w + budget]
            a = start if w == 0 else start + window[0][0]
            b = end if w + budget >= len(tokens) else start + window[-1][1]
            last = w + budget >= len(tokens)
            if text[a:b].strip():  # a window of only spaces would embed nothing
                pieces.append(_Piece(a, b, i + 1, len(window), blank_next and last))
    return pieces
