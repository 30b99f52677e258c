"""Best-span selection on hand-made windows: each case has a trap the naive method falls into."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from qa_operator.model.spans import NO_SPAN, Window, best_span, best_span_in_window

NEG = -1e4  # "never": a logit whose probability is ~0


def window(
    start: Sequence[float],
    end: Sequence[float],
    seq: Sequence[int | None],
    offsets: Sequence[tuple[int, int]] | None = None,
) -> Window:
    """A window whose token i covers characters [10*i, 10*i + 5) unless offsets are given."""
    if offsets is None:
        offsets = [(0, 0) if s is None else (10 * i, 10 * i + 5) for i, s in enumerate(seq)]
    return Window(np.array(start), np.array(end), offsets, seq)


# [CLS] q q [SEP] c c c c [SEP]
SEQ = [None, 0, 0, None, 1, 1, 1, 1, None]


def test_end_before_start_is_never_chosen() -> None:
    # Independent argmax picks start=6, end=4 (an empty/negative span); the best valid span is
    # 4..4 or 6..6, whichever product is higher: here 6..6 (start 6 strong, end 6 decent).
    start = [0, 0, 0, 0, 1, 0, 5, 0, 0]
    end = [0, 0, 0, 0, 5, 0, 2, 0, 0]
    span = best_span_in_window(window(start, end, SEQ), max_answer_tokens=10)
    assert span is not None
    assert span.start <= span.end
    assert (span.start, span.end) == (60, 65)


def test_span_may_not_start_in_question_or_special_tokens() -> None:
    # The highest start logit is on a question token and on [CLS]; the answer stays in context.
    start = [9, 9, 9, 9, 0, 2, 0, 0, 9]
    end = [9, 9, 9, 9, 0, 0, 3, 0, 9]
    span = best_span_in_window(window(start, end, SEQ), max_answer_tokens=10)
    assert span is not None
    assert (span.start, span.end) == (50, 65)


def test_over_length_span_loses_to_a_shorter_valid_one() -> None:
    # Best start at token 4, best end at token 7 (4 tokens); with at most 2 tokens the answer
    # must be a shorter span.
    start = [0, 0, 0, 0, 5, 0, 1, 0, 0]
    end = [0, 0, 0, 0, 0, 1, 0, 5, 0]
    long = best_span_in_window(window(start, end, SEQ), max_answer_tokens=4)
    short = best_span_in_window(window(start, end, SEQ), max_answer_tokens=2)
    assert long is not None and (long.start, long.end) == (40, 75)
    assert short is not None and (short.start, short.end) == (40, 55)


def test_score_is_product_of_softmax_over_context_positions() -> None:
    start = [100, 100, 100, 100, 0, 0, 0, 0, 100]  # non-context logits do not dilute the score
    end = [100, 100, 100, 100, 0, 0, 0, 0, 100]
    span = best_span_in_window(window(start, end, SEQ), max_answer_tokens=10)
    assert span is not None
    assert span.score == pytest.approx(0.25 * 0.25)


def test_best_span_across_windows_uses_comparable_scores() -> None:
    # Window A has large raw logits but they are spread out; window B is confident. B wins.
    a = window([0, 0, 0, 0, 50, 50, 50, 50, 0], [0, 0, 0, 0, 50, 50, 50, 50, 0], SEQ)
    b_offsets = [
        (0, 0),
        (0, 0),
        (0, 0),
        (0, 0),
        (100, 105),
        (106, 110),
        (111, 115),
        (116, 120),
        (0, 0),
    ]
    b = window([0, 0, 0, 0, 0, 8, 0, 0, 0], [0, 0, 0, 0, 0, 8, 0, 0, 0], SEQ, b_offsets)
    span = best_span([a, b], max_answer_tokens=10)
    assert (span.start, span.end) == (106, 110)
    assert span.score > 0.9


def test_no_valid_span_gives_the_empty_answer() -> None:
    only_question = [None, 0, 0, None, None]
    w = window([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], only_question)
    assert best_span_in_window(w, max_answer_tokens=5) is None
    assert best_span([w], max_answer_tokens=5) == NO_SPAN
    assert NO_SPAN.is_empty and NO_SPAN.score == 0.0
    assert best_span([], max_answer_tokens=5) == NO_SPAN


def test_logits_longer_than_the_window_are_ignored_past_its_tokens() -> None:
    # A padded batch row: logits beyond the window's tokens must not be considered.
    seq = [None, 0, None, 1, 1, None]
    w = Window(
        np.array([0, 0, 0, 1, 0, 0, 99, 99]),
        np.array([0, 0, 0, 0, 1, 0, 99, 99]),
        [(0, 0), (0, 2), (0, 0), (0, 3), (4, 9), (0, 0)],
        seq,
    )
    span = best_span_in_window(w, max_answer_tokens=5)
    assert span is not None and (span.start, span.end) == (0, 9)
    assert math.isfinite(span.score)


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_answer_tokens"):
        best_span_in_window(window([0], [0], [1], [(0, 1)]), max_answer_tokens=0)
    with pytest.raises(ValueError, match="same tokens"):
        best_span_in_window(Window(np.zeros(2), np.zeros(3), [(0, 1)] * 3, [1, 1, 1]), 3)
