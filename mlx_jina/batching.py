"""Group token sequences into padded batches: longest first, under a token budget."""

from dataclasses import dataclass


@dataclass
class BatchPlan:
    batches: list[list[int]]  # input indices, each batch sorted longest first
    real_tokens: int
    padded_tokens: int

    @property
    def padding_efficiency(self) -> float:
        """Real tokens / computed tokens (1.0 = no padding)."""
        return self.real_tokens / self.padded_tokens if self.padded_tokens else 1.0


def plan_batches(lengths: list[int], batch_size: int, max_batch_tokens: int) -> BatchPlan:
    """Sort by length and cut batches of at most `batch_size` rows and `max_batch_tokens`
    padded tokens. An input longer than the budget gets a batch of its own."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        cur = batches[-1] if batches else None
        # Sorted longest first, so a batch pads to the length of its first row.
        if cur and len(cur) < batch_size and (len(cur) + 1) * lengths[cur[0]] <= max_batch_tokens:
            cur.append(i)
        else:
            batches.append([i])
    padded = sum(len(b) * lengths[b[0]] for b in batches)
    return BatchPlan(batches, sum(lengths), padded)
