"""Validation of a prediction request's table (pure: pandas only).

Shared by the pyfunc model and the serving layer so that both say the same thing about a bad row.
"""

from __future__ import annotations

import math
from typing import Any

QUESTION = "question"
TEXT = "text"
TEXT_ALIASES = ("text", "context")


class InvalidInput(ValueError):
    """The request's rows cannot be answered; the message says why."""


def _column(frame: Any, names: tuple[str, ...]) -> str | None:
    for name in names:
        if name in frame.columns:
            return name
    return None


def questions_and_texts(frame: Any) -> tuple[list[str], list[str]]:
    """Return (questions, texts) from a DataFrame with `question` and `text` (or `context`)
    columns; raise InvalidInput for missing columns and empty or non-string values."""
    columns = getattr(frame, "columns", None)
    if columns is None:
        raise InvalidInput(
            f"expected a table with columns '{QUESTION}' and '{TEXT}', got {type(frame).__name__}"
        )
    missing = []
    if QUESTION not in frame.columns:
        missing.append(f"'{QUESTION}'")
    text_column = _column(frame, TEXT_ALIASES)
    if text_column is None:
        missing.append(f"'{TEXT}' (or its alias 'context')")
    if missing:
        found = ", ".join(repr(str(c)) for c in frame.columns) or "none"
        raise InvalidInput(f"missing column(s) {' and '.join(missing)}; found columns: {found}")
    assert text_column is not None
    if len(frame) == 0:
        raise InvalidInput("no rows to answer: send at least one question and text")
    questions = _strings(frame[QUESTION].tolist(), QUESTION)
    texts = _strings(frame[text_column].tolist(), text_column)
    return questions, texts


def _strings(values: list[Any], column: str) -> list[str]:
    for row, value in enumerate(values):
        if not isinstance(value, str):
            missing = value is None or (isinstance(value, float) and math.isnan(value))
            shown = "missing" if missing else type(value).__name__
            raise InvalidInput(f"row {row}: '{column}' must be a non-empty string, got {shown}")
        if not value.strip():
            raise InvalidInput(f"row {row}: '{column}' is empty")
    return values
