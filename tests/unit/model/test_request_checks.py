"""The serving layer's request checks and rewrites (no server, no model)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from qa_operator.model.config import InferenceConfig
from qa_operator.model.inputs import InvalidInput, questions_and_texts
from qa_operator.model.serving import BadRequest, check_request

JSON = "application/json"
CSV = "text/csv"


def rewrite(payload: object) -> dict[str, object]:
    result: dict[str, object] = json.loads(check_request(JSON, json.dumps(payload).encode()))
    return result


def test_plain_object_list_and_columns_become_dataframe_records() -> None:
    row = {"question": "q?", "text": "t."}
    assert rewrite(row) == {"dataframe_records": [row]}
    assert rewrite([row, row]) == {"dataframe_records": [row, row]}
    assert rewrite({"question": ["a", "b"], "context": ["x", "y"]}) == {
        "dataframe_records": [{"question": "a", "context": "x"}, {"question": "b", "context": "y"}]
    }
    assert rewrite({**row, "params": {"batch_size": 2}}) == {
        "dataframe_records": [row],
        "params": {"batch_size": 2},
    }


def test_mlflow_columnar_inputs_are_checked_per_row() -> None:
    columns = {"inputs": {"question": ["a", "b"], "text": ["x", ""]}}
    with pytest.raises(BadRequest, match="row 1: 'text' is empty"):
        check_request(JSON, json.dumps(columns).encode())
    good = {"inputs": {"question": ["a", "b"], "text": ["x", "y"]}}
    assert rewrite(good) == good


def test_mlflow_shapes_pass_unchanged() -> None:
    split = {"dataframe_split": {"columns": ["question", "text"], "data": [["q", "t"]]}}
    assert rewrite(split) == split


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        (JSON, b'{"question": "q"', "malformed JSON"),
        (JSON, b"42", "expected a JSON object"),
        (JSON, b"[]", "no rows"),
        (JSON, b"[1, 2]", "must hold objects"),
        (JSON, b'{"question": "q"}', "missing column.*'text'"),
        (JSON, b'{"question": "", "text": "t"}', "row 0: 'question' is empty"),
        (
            JSON,
            b'{"question": "q", "text": null}',
            "'text' must be a non-empty string, got missing",
        ),
        (JSON, b'[{"question": "q", "text": "t"}, {"question": 3, "text": "t"}]', "row 1"),
        (JSON, b'{"question": ["a"], "text": ["x", "y"]}', "same length"),
        (JSON, b'{"question": "q", "text": "t", "params": {"doc_stride": 999}}', "bad params"),
        (CSV, b"", "CSV body is empty"),
        (CSV, b'question,text\n"q,t\n', "malformed CSV"),
        (CSV, b"question,text\nq,\n", "row 0: 'text' is empty"),
        (CSV, b"\xff\xfe", "not valid UTF-8"),
    ],
)
def test_bad_requests_say_what_is_wrong(content_type: str, body: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        check_request(content_type, body, InferenceConfig())


def test_good_csv_and_unknown_types_pass_through() -> None:
    body = b"question,text\nWho?,Alex.\n"
    assert check_request(CSV, body) == body
    assert check_request("text/plain", b"whatever") == b"whatever"


def test_context_is_an_alias_for_text() -> None:
    frame = pd.DataFrame({"question": ["q"], "context": ["c"]})
    assert questions_and_texts(frame) == (["q"], ["c"])
    with pytest.raises(InvalidInput, match="no rows"):
        questions_and_texts(pd.DataFrame({"question": [], "text": []}))
