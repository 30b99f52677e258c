"""Length-aware batching: sorted, capped, and never padding-heavy."""

from __future__ import annotations

import random

import pytest

from qa_operator.model.batching import MAX_PADDING_SHARE, length_batches


def test_equal_lengths_fill_batches_up_to_the_cap() -> None:
    assert length_batches([50] * 5, batch_size=2) == [[0, 1], [2, 3], [4]]


def test_mixed_lengths_are_split_where_padding_would_be_wasteful() -> None:
    # 100 and 300 in one batch would pad 100 -> 300: a third of the compute wasted.
    assert length_batches([300, 100, 105, 310], batch_size=16) == [[1, 2], [0, 3]]


def test_every_window_once_sorted_and_padding_bounded() -> None:
    rng = random.Random(7)
    lengths = [rng.randint(20, 384) for _ in range(200)]
    batches = length_batches(lengths, batch_size=16)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(200))
    assert [lengths[i] for i in flat] == sorted(lengths)
    for batch in batches:
        assert 1 <= len(batch) <= 16
        real = sum(lengths[i] for i in batch)
        padded = len(batch) * max(lengths[i] for i in batch)
        assert padded - real <= MAX_PADDING_SHARE * padded + 1e-9


@pytest.mark.parametrize("lengths", [[], [7]])
def test_trivial_inputs(lengths: list[int]) -> None:
    assert length_batches(lengths, batch_size=4) == ([[0]] if lengths else [])
