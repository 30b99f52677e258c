"""Best answer span from a QA model's start/end logits (pure: numpy only).

A long context is read as several overlapping windows. In each window only context tokens may
start or end an answer, the end may not precede the start, and the answer may be at most
`max_answer_tokens` long. Start and end logits are turned into probabilities by a softmax over the
window's context positions, so a span's score (p_start * p_end) is comparable across windows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

CONTEXT_SEQUENCE_ID = 1  # tokenizer(question, text): sequence id 0 is the question, 1 the text


@dataclass(frozen=True)
class Window:
    """One tokenized window: per-token logits, character offsets into the original text, and
    the tokenizer's sequence ids (None for special tokens)."""

    start_logits: npt.ArrayLike
    end_logits: npt.ArrayLike
    offsets: Sequence[tuple[int, int]]
    sequence_ids: Sequence[int | None]


@dataclass(frozen=True)
class Span:
    """An answer as character offsets into the original text; start == end means no answer."""

    start: int
    end: int
    score: float

    @property
    def is_empty(self) -> bool:
        return self.end <= self.start


NO_SPAN = Span(start=0, end=0, score=0.0)


def _softmax(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    shifted = np.exp(values - values.max())
    result: npt.NDArray[np.float64] = shifted / shifted.sum()
    return result


def best_span_in_window(window: Window, max_answer_tokens: int) -> Span | None:
    """The best valid span of one window, or None when the window has no valid span."""
    if max_answer_tokens < 1:
        raise ValueError(f"max_answer_tokens must be >= 1, got {max_answer_tokens}")
    starts = np.asarray(window.start_logits, dtype=np.float64).reshape(-1)
    ends = np.asarray(window.end_logits, dtype=np.float64).reshape(-1)
    n = len(window.sequence_ids)
    if not (len(starts) >= n and len(ends) >= n and len(window.offsets) >= n):
        raise ValueError("logits, offsets and sequence ids must cover the same tokens")
    context = np.array(
        [
            i
            for i, seq in enumerate(window.sequence_ids)
            if seq == CONTEXT_SEQUENCE_ID and window.offsets[i][1] > window.offsets[i][0]
        ],
        dtype=np.int64,
    )
    if context.size == 0:
        return None
    p_start = _softmax(starts[context])
    p_end = _softmax(ends[context])
    # scores[a, b]: start at context[a], end at context[b]; valid when 0 <= b - a < max length
    # in *token positions* (context tokens are contiguous, so position gaps are token counts).
    scores = np.outer(p_start, p_end)
    gap = context[None, :] - context[:, None]
    scores = np.where((gap >= 0) & (gap < max_answer_tokens), scores, -1.0)
    flat = int(np.argmax(scores))
    a, b = divmod(flat, len(context))
    if scores[a, b] < 0:
        return None
    start_char = int(window.offsets[int(context[a])][0])
    end_char = int(window.offsets[int(context[b])][1])
    return Span(start=start_char, end=end_char, score=float(scores[a, b]))


def best_span(windows: Iterable[Window], max_answer_tokens: int) -> Span:
    """The best valid span over all windows of one context; NO_SPAN when none is valid."""
    best: Span | None = None
    for window in windows:
        span = best_span_in_window(window, max_answer_tokens)
        if span is not None and (best is None or span.score > best.score):
            best = span
    return best if best is not None else NO_SPAN
