"""Serving limits: the config, the windows bound, the JSON depth scan, the request checks and the
ASGI layer's body reading and disconnect handling (no server, no model)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import MutableMapping
from dataclasses import replace
from typing import Any

import pytest

from qa_operator.model.config import InferenceConfig
from qa_operator.model.limits import (
    SERVING_LIMITS_KEY,
    ServingLimits,
    TokenCounts,
    from_model_config,
    json_depth,
    model_config,
    request_cancelled,
    windows_needed,
)
from qa_operator.model.serving import BadRequest, RequestTooLarge, SageMakerLayer, check_request

JSON = "application/json"
CSV = "text/csv"
SMALL = ServingLimits(
    max_body_bytes=2_000,
    max_rows=3,
    max_text_chars=300,
    max_question_chars=20,
    max_windows_per_row=4,
    max_batch_tokens=4 * 64,
    max_json_depth=5,
)
# One token per character for questions, BERT's 3 special tokens: exact arithmetic in the tests.
CHARS = TokenCounts(lambda questions: [len(q) for q in questions], 3)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_body_bytes", 0, "max_body_bytes must be a positive integer"),
        ("max_rows", -1, "max_rows must be a positive integer"),
        ("max_text_chars", True, "max_text_chars must be a positive integer"),
        ("max_question_chars", 1.5, "max_question_chars must be a positive integer"),
        ("max_windows_per_row", "9", "max_windows_per_row must be a positive integer"),
        ("max_batch_tokens", 0, "max_batch_tokens must be a positive integer"),
        ("max_json_depth", 3, "max_json_depth must be at least 4"),
    ],
)
def test_bad_limits_are_named(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServingLimits(**{field: value}).validate()


def test_limits_round_trip_and_reject_unknown_keys() -> None:
    assert ServingLimits.from_dict(SMALL.to_dict()) == SMALL
    assert ServingLimits.from_dict({"max_rows": None}) == ServingLimits()
    with pytest.raises(ValueError, match=r"unknown serving limit.*max_bytes"):
        ServingLimits.from_dict({"max_bytes": 3})


def test_default_limits_leave_model_config_as_before() -> None:
    config = InferenceConfig(batch_size=8)
    assert model_config(config) == config.to_dict()
    assert model_config(config, ServingLimits()) == config.to_dict()
    custom = model_config(config, SMALL)
    assert custom[SERVING_LIMITS_KEY] == SMALL.to_dict()
    assert from_model_config(custom) == (config, SMALL)
    # A package built before limits existed loads with the defaults.
    assert from_model_config(config.to_dict()) == (config, ServingLimits())
    with pytest.raises(ValueError, match="serving_limits must be a mapping"):
        from_model_config({SERVING_LIMITS_KEY: [1]})
    with pytest.raises(ValueError, match="max_rows"):
        from_model_config({SERVING_LIMITS_KEY: {"max_rows": 0}})


@pytest.mark.parametrize(
    ("text", "question", "special", "length", "stride", "windows"),
    [
        (100, 10, 3, 384, 128, 1),  # fits in one window
        (371, 10, 3, 384, 128, 1),  # exactly the capacity
        (372, 10, 3, 384, 128, 2),
        (371 + 243, 10, 3, 384, 128, 2),  # advance = 371 - 128
        (371 + 244, 10, 3, 384, 128, 3),
        (1000, 10, 3, 32, 18, 982),  # advance 1: a window per token past the first 19
        (1000, 10, 3, 32, 19, None),  # no advance
        (10, 29, 3, 32, 0, None),  # the question fills the window
        (10, 28, 3, 32, 0, 10),
    ],
)
def test_windows_needed(
    text: int, question: int, special: int, length: int, stride: int, windows: int | None
) -> None:
    assert windows_needed(text, question, special, length, stride) == windows


@pytest.mark.parametrize(
    ("body", "depth"),
    [
        (b"42", 0),
        (b'"[[[{{"', 0),
        (b"[]", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'{"a": "]]]]", "b": [[["x"]]]}', 4),
        (b'{"a": "\\"[[[[[[", "b": [1]}', 2),  # an escaped quote does not end the string
        (b"[[], [], [[]]]", 3),
        (b"[" * 100_000, 100_000),
        (b"[" * 100_000 + b"]" * 100_000, 100_000),
    ],
)
def test_json_depth(body: bytes, depth: int) -> None:
    assert json_depth(body) == depth


def request(text: str = "Alex lives here.", question: str = "Who?", **extra: Any) -> bytes:
    return json.dumps({"question": question, "text": text, **extra}).encode()


def rows(n: int) -> bytes:
    return json.dumps([{"question": "q", "text": "t"}] * n).encode()


@pytest.mark.parametrize(
    ("content_type", "body", "error", "message"),
    [
        (JSON, b" " * 2_001, RequestTooLarge, "max_body_bytes=2000"),
        (CSV, b"question,text\n" + b"q,t\n" * 500, RequestTooLarge, "max_body_bytes=2000"),
        ("text/plain", b"x" * 2_001, RequestTooLarge, "max_body_bytes=2000"),
        (JSON, b'{"question": "q", "text": [[[[["t"]]]]]}', BadRequest, "nests 6 .*depth=5"),
        (JSON, b"[" * 1_999, BadRequest, "nests 1999 .*max_json_depth=5"),
        (JSON, rows(4), RequestTooLarge, "4 rows; max_rows=3"),
        (CSV, b"question,text\n" + b"q,t\n" * 4, RequestTooLarge, "4 rows; max_rows=3"),
        (
            JSON,
            json.dumps({"inputs": {"question": ["q"] * 4, "text": ["t"] * 4}}).encode(),
            RequestTooLarge,
            "max_rows=3",
        ),
        (JSON, request(question="q" * 21), RequestTooLarge, "row 0: .*max_question_chars=20"),
        (JSON, request(text="t" * 301), RequestTooLarge, "row 0: .*max_text_chars=300"),
        (
            CSV,
            b"question,text\nq,t\nq," + b"t" * 301 + b"\n",
            RequestTooLarge,
            "row 1: .*max_text_chars=300",
        ),
        # max_seq_length 32, 3 special tokens, a 4-token question: 25 text tokens per window.
        (
            JSON,
            request(text="t" * 200, params={"max_seq_length": 32, "doc_stride": 0}),
            BadRequest,
            "row 0: .*up to 9 windows.*max_windows_per_row=4",
        ),
        (
            JSON,
            request(text="t" * 100, params={"max_seq_length": 32, "doc_stride": 24}),
            BadRequest,
            "row 0: .*up to 77 windows.*max_windows_per_row=4",
        ),
        (
            JSON,
            request(question="q" * 20, params={"max_seq_length": 32, "doc_stride": 9}),
            BadRequest,
            "row 0: the question .20 tokens. leaves no room",
        ),
        (
            JSON,
            request(params={"batch_size": 5, "max_seq_length": 64}),
            BadRequest,
            "5 x max_seq_length=64 = 320 tokens .*max_batch_tokens=256",
        ),
        (JSON, request(params={"batch_size": 1024}), BadRequest, "max_batch_tokens=256"),
        (JSON, request(params={"doc_stride": 64}), BadRequest, "bad params: doc_stride"),
    ],
)
def test_requests_over_a_limit_are_refused_naming_it(
    content_type: str, body: bytes, error: type[BadRequest], message: str
) -> None:
    config = InferenceConfig(max_seq_length=64, doc_stride=16, batch_size=4)
    with pytest.raises(BadRequest, match=message) as raised:
        check_request(content_type, body, config, SMALL, CHARS)
    assert type(raised.value) is error
    assert raised.value.status == (413 if error is RequestTooLarge else 400)


@pytest.mark.parametrize(
    ("body", "limits"),
    [
        (rows(3), SMALL),
        (request(question="q" * 20, text="t" * 300), replace(SMALL, max_windows_per_row=12)),
        (
            json.dumps({"dataframe_split": {"columns": ["question", "text"], "data": [["q", "t"]]}})
            .encode()
            .ljust(2_000),
            replace(SMALL, max_json_depth=4),
        ),
        # 4 windows exactly: 64 - 4 - 3 = 57 text tokens, then 41 more per window.
        (request(text="t" * (57 + 3 * 41 - 1)), SMALL),
        (request(params={"batch_size": 4, "max_seq_length": 64, "max_answer_length": 5}), SMALL),
    ],
)
def test_requests_at_the_limits_pass(body: bytes, limits: ServingLimits) -> None:
    config = InferenceConfig(max_seq_length=64, doc_stride=16, batch_size=4)
    assert json.loads(check_request(JSON, body, config, limits, CHARS))


def test_the_package_settings_make_long_texts_a_413_and_params_a_400() -> None:
    config = InferenceConfig(max_seq_length=64, doc_stride=16, batch_size=4)
    over = "t" * (57 + 3 * 41)  # 5 windows with one token per byte
    with pytest.raises(RequestTooLarge, match="up to 5 windows"):
        check_request(JSON, request(text=over), config, SMALL, CHARS)
    with pytest.raises(BadRequest, match="or a smaller doc_stride") as raised:
        check_request(JSON, request(text=over, params={"doc_stride": 16}), config, SMALL, CHARS)
    assert raised.value.status == 400


def test_a_package_over_max_batch_tokens_still_answers_requests_that_keep_it() -> None:
    config = InferenceConfig(
        max_seq_length=64, doc_stride=16, batch_size=8
    )  # 512 > 256, set by the operator
    check_request(JSON, request(params={"max_answer_length": 3}), config, SMALL, CHARS)


def test_without_the_tokenizer_question_tokens_are_bounded_by_bytes() -> None:
    config = InferenceConfig(max_seq_length=32, doc_stride=0)
    # 20 bytes + 1 for the question and 4 special tokens leave 7 text tokens per window; the
    # text's 52 bytes + 1 need 8 windows.
    body = request(question="é" * 10, text="t" * 52)
    with pytest.raises(BadRequest, match="up to 8 windows"):
        check_request(JSON, body, config, ServingLimits(max_windows_per_row=7))
    check_request(JSON, body, config, ServingLimits(max_windows_per_row=8))


def test_json_deeper_than_python_can_parse_is_a_400_even_with_a_high_limit() -> None:
    limits = ServingLimits(max_json_depth=10**9)
    with pytest.raises(BadRequest, match="nests too deeply"):
        check_request(JSON, b"[" * 200_000 + b"]" * 200_000, InferenceConfig(), limits)


# --- the ASGI layer ------------------------------------------------------------------------


class Client:
    """An ASGI client: the request body in chunks; then, like uvicorn, a disconnect after
    `disconnect_after_s`, or once the response is complete when that is None."""

    def __init__(self, chunks: list[bytes], disconnect_after_s: float | None = None) -> None:
        self.chunks = chunks
        self.disconnect_after_s = disconnect_after_s
        self.received = 0
        self.sent: list[MutableMapping[str, Any]] = []
        self.complete = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        if self.received < len(self.chunks):
            self.received += 1
            more = self.received < len(self.chunks)
            return {
                "type": "http.request",
                "body": self.chunks[self.received - 1],
                "more_body": more,
            }
        if self.disconnect_after_s is None:
            await self.complete.wait()
        else:
            await asyncio.sleep(self.disconnect_after_s)
        return {"type": "http.disconnect"}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.complete.set()

    def status(self) -> int:
        return int(self.sent[0]["status"])

    def json(self) -> Any:
        return json.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))


def scope(length: int | None = None) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {"type": "http", "method": "POST", "path": "/invocations", "headers": headers}


async def never_called(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("the request should not reach MLflow")


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    client = Client([b"x" * 10])
    layer = SageMakerLayer(never_called, limits=SMALL)
    asyncio.run(layer(scope(length=2_001), client.receive, client.send))
    assert client.status() == 413
    assert client.received == 0
    assert client.json() == {
        "error_code": "REQUEST_TOO_LARGE",
        "message": "the request body exceeds max_body_bytes=2000 bytes: "
        "send fewer or shorter rows per request",
    }


def test_a_body_is_read_only_until_it_passes_the_limit() -> None:
    client = Client([b"x" * 1_000] * 10)
    layer = SageMakerLayer(never_called, limits=SMALL)
    asyncio.run(layer(scope(), client.receive, client.send))
    assert client.status() == 413
    assert client.received == 3


def test_a_client_that_goes_away_cancels_the_work_in_mlflows_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: dict[str, Any] = {}

    def work() -> None:
        deadline = time.monotonic() + 10
        while not request_cancelled() and time.monotonic() < deadline:
            time.sleep(0.01)
        seen["cancelled"] = request_cancelled()

    async def model_app(scope: Any, receive: Any, send: Any) -> None:
        seen["body"] = (await receive())["body"]
        started = time.monotonic()
        await asyncio.to_thread(work)  # as MLflow's scoring server runs the model
        seen["waited_s"] = time.monotonic() - started

    async def run() -> None:
        client = Client([request()], disconnect_after_s=0.2)
        await SageMakerLayer(model_app, limits=SMALL)(scope(), client.receive, client.send)

    with caplog.at_level(logging.WARNING, logger="qa_operator.model.serving"):
        asyncio.run(run())
    assert seen["cancelled"] is True
    assert seen["waited_s"] < 5
    assert json.loads(seen["body"])["dataframe_records"][0]["question"] == "Who?"
    assert "client disconnected before its /invocations answer" in caplog.text


def test_a_client_that_stays_is_answered_and_not_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def model_app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0.1)  # the layer's watcher is waiting on receive() meanwhile
        cancelled = await asyncio.to_thread(request_cancelled)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(cancelled).encode()})
        await asyncio.sleep(0.1)  # uvicorn reports the disconnect once the response is sent

    async def run() -> Client:
        client = Client([request()])
        await SageMakerLayer(model_app, limits=SMALL)(scope(), client.receive, client.send)
        return client

    with caplog.at_level(logging.WARNING, logger="qa_operator.model.serving"):
        client = asyncio.run(run())
    assert client.status() == 200
    assert client.sent[1]["body"] == b"False"
    assert "client disconnected" not in caplog.text
