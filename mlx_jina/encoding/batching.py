"""Group token sequences into padded batches of similar length, under a token budget."""

from dataclasses import dataclass

# Most padding tokens a batch may collect before a new batch is cheaper. A batch has a
# fixed cost (building its graph, launching kernels) worth a few dozen tokens of work;
# padding costs as much as real tokens. With 32, the mixed benchmark corpus (queries,
# passages, long documents) keeps over 97% of computed tokens real.
BATCH_PADDING = 32


@dataclass(frozen=True)
class TokenCounts:
    real_tokens: int
    padded_tokens: int  # computed, padding included

    @property
    def padding_efficiency(self) -> float:
        """Real tokens / computed tokens (1.0 = no padding)."""
        return self.real_tokens / self.padded_tokens if self.padded_tokens else 1.0


@dataclass(frozen=True)
class BatchPlan(TokenCounts):
    batches: list[list[int]]  # input indices, each batch sorted longest first

    @property
    def order(self) -> list[int]:
        """Input index of each output row, batch after batch."""
        return [i for batch in self.batches for i in batch]


def fits(
    rows: int,
    width: int,
    real: int,
    length: int,
    max_batch_tokens: int,
    max_padding: int = BATCH_PADDING,
) -> bool:
    """Whether a row of `length` tokens may join a batch of `rows` rows padded to `width`
    and holding `real` real tokens: the batch stays within the token budget and its
    padding within `max_padding`. An empty batch takes any row."""
    width = max(width, length)
    padded = (rows + 1) * width
    return rows == 0 or (padded <= max_batch_tokens and padded - real - length <= max_padding)


def plan_batches(
    lengths: list[int],
    batch_size: int,
    max_batch_tokens: int,
    max_padding: int = BATCH_PADDING,
) -> BatchPlan:
    """Sort by length, longest first, and cut batches of at most `batch_size` rows and
    `max_batch_tokens` padded tokens whose padding stays within `max_padding` tokens.

    An input longer than the token budget gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    real = 0
    for i in order:
        cur = batches[-1] if batches else None
        # Sorted longest first, so a batch pads to the length of its first row.
        if (
            cur
            and len(cur) < batch_size
            and fits(len(cur), lengths[cur[0]], real, lengths[i], max_batch_tokens, max_padding)
        ):
            cur.append(i)
            real += lengths[i]
        else:
            batches.append([i])
            real = lengths[i]
    padded = sum(len(b) * lengths[b[0]] for b in batches)
    return BatchPlan(sum(lengths), padded, batches)


@dataclass(frozen=True)
class EncodeStats(TokenCounts):
    """What one `encode` call computed: `Embedder.last_stats` after each call."""

    texts: int
    batches: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.real_tokens / self.seconds if self.seconds > 0 else 0.0
