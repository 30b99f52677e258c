"""Grouping tokenized windows into forward passes (pure)."""

from __future__ import annotations

from collections.abc import Sequence

# A batch is padded to its longest window; on CPU padded positions cost as much as real ones, so
# a batch may waste at most this share of its tokens on padding.
MAX_PADDING_SHARE = 0.1


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Window indices grouped for forward passes: sorted by length, at most `batch_size` per
    batch, and a new batch whenever padding to the next window would waste more than
    MAX_PADDING_SHARE of the batch's compute (big batches of mixed lengths are slower on CPU
    than no batching at all)."""
    batches: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        padded = (len(current) + 1) * lengths[i]
        if current and (
            len(current) >= batch_size or padded * (1 - MAX_PADDING_SHARE) > tokens + lengths[i]
        ):
            batches.append(current)
            current, tokens = [], 0
        current.append(i)
        tokens += lengths[i]
    if current:
        batches.append(current)
    return batches
