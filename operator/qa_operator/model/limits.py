"""What one request to the serving layer may cost, and how a request is abandoned (pure: the
standard library, and numpy inside `json_depth`).

The limits live in the package's MLflow `model_config` under `serving_limits`, next to the
inference settings, and only when they differ from the defaults: a package built with default
limits is byte-identical to one built before limits existed, and an old package loads with the
defaults.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, fields
from typing import Any

from qa_operator.model.config import InferenceConfig

SERVING_LIMITS_KEY = "serving_limits"
# {"dataframe_split": {"data": [["q", "t"]]}} is 4 levels deep: no smaller limit serves MLflow.
MIN_JSON_DEPTH = 4


@dataclass(frozen=True)
class ServingLimits:
    """Caps on one /invocations request, checked before MLflow or the model sees it."""

    max_body_bytes: int = 5 * 1024 * 1024
    max_rows: int = 256
    max_text_chars: int = 100_000
    max_question_chars: int = 1_000
    max_windows_per_row: int = 512
    max_batch_tokens: int = 16 * 512
    max_json_depth: int = 8

    def validate(self) -> ServingLimits:
        """Raise ValueError naming the first bad limit; return self so calls can chain."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{f.name} must be a positive integer, got {value!r}")
        if self.max_json_depth < MIN_JSON_DEPTH:
            raise ValueError(
                f"max_json_depth must be at least {MIN_JSON_DEPTH} (MLflow's dataframe_split "
                f"needs it), got {self.max_json_depth}"
            )
        return self

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServingLimits:
        """Unknown keys are an error, missing or None ones take defaults; validated."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown serving limit(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**{k: v for k, v in data.items() if v is not None}).validate()


def model_config(config: InferenceConfig, limits: ServingLimits | None = None) -> dict[str, Any]:
    """The package's MLflow model_config: the inference settings, plus the limits when they are
    not the defaults (so default packages keep their digest)."""
    data: dict[str, Any] = config.to_dict()
    if limits is not None and limits != ServingLimits():
        data[SERVING_LIMITS_KEY] = limits.validate().to_dict()
    return data


def from_model_config(data: Mapping[str, Any]) -> tuple[InferenceConfig, ServingLimits]:
    """Inverse of `model_config`; raise ValueError or TypeError for a config that is not ours."""
    settings = dict(data)
    raw_limits = settings.pop(SERVING_LIMITS_KEY, None) or {}
    if not isinstance(raw_limits, Mapping):
        raise ValueError(f"{SERVING_LIMITS_KEY} must be a mapping, got {type(raw_limits).__name__}")
    return InferenceConfig.from_dict(settings), ServingLimits.from_dict(raw_limits)


# --- windows -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenCounts:
    """How many tokens each question takes (no special tokens) and how many special tokens the
    tokenizer adds to a (question, text) pair."""

    questions: Callable[[Sequence[str]], list[int]]
    special_per_pair: int


def text_tokens_upper_bound(text: str) -> int:
    """No common tokenizer makes more tokens than a text has UTF-8 bytes (WordPiece and
    SentencePiece pieces cover at least one character, byte-level BPE at least one byte); one
    more for a prefix space some tokenizers add."""
    return len(text.encode("utf-8", "surrogatepass")) + 1


# Without the model's tokenizer (a package that is not ours, unit tests): bytes for the
# question too, and RoBERTa's 4 special tokens, the most among the usual QA encoders.
ESTIMATED_TOKEN_COUNTS = TokenCounts(
    questions=lambda questions: [text_tokens_upper_bound(q) for q in questions],
    special_per_pair=4,
)


def windows_needed(
    text_tokens: int, question_tokens: int, special_tokens: int, max_seq_length: int, stride: int
) -> int | None:
    """Windows a fast tokenizer makes of one (question, text) pair with truncation
    "only_second": each window holds `capacity` text tokens and the next starts `capacity -
    stride` tokens later. None when the question leaves no room to advance."""
    capacity = max_seq_length - question_tokens - special_tokens
    if capacity <= 0:
        return None
    if text_tokens <= capacity:
        return 1
    advance = capacity - stride
    if advance <= 0:
        return None
    return 1 + math.ceil((text_tokens - capacity) / advance)


# --- JSON depth ----------------------------------------------------------------------------

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(body: bytes) -> int:
    """How deeply arrays and objects nest in a JSON text, without parsing it (no recursion, so
    no RecursionError however deep). Brackets inside strings do not count; for malformed JSON
    the figure is approximate, and the parser rejects the text anyway."""
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    import numpy as np

    raw = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.isin(raw, (ord("["), ord("{"))).astype(np.int64) * 2 - 1
    return int(np.cumsum(steps).max())


# --- cancellation --------------------------------------------------------------------------


class RequestCancelled(Exception):
    """The client went away; the work for its request was abandoned."""


# Set by the serving layer around one request; asyncio.to_thread copies it into the thread
# where MLflow runs the model, so the engine sees the flag of its own request.
_CANCEL: ContextVar[threading.Event | None] = ContextVar("qa_request_cancel", default=None)


@contextmanager
def cancellation(event: threading.Event) -> Iterator[threading.Event]:
    """Within this block (and threads started from it with a copied context),
    `request_cancelled()` answers whether `event` is set."""
    token = _CANCEL.set(event)
    try:
        yield event
    finally:
        _CANCEL.reset(token)


def request_cancelled() -> bool:
    event = _CANCEL.get()
    return event is not None and event.is_set()
