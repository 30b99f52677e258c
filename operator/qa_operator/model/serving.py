"""Serving the package under SageMaker's container contract with MLflow's scoring server.

SageMaker runs the image with the argument `serve` and expects GET /ping and POST /invocations on
port 8080, with the model extracted into /opt/ml/model. MLflow's scoring server does the work; a
thin ASGI layer in front of it

* accepts what SageMaker users send besides MLflow's own formats: a plain
  `{"question": ..., "text": ...}` object, a list of them, or one object of equal-length columns
  (rewritten into `dataframe_records`);
* checks the rows (columns present, values non-empty strings) and malformed JSON/CSV itself, so a
  bad request gets a 400 saying what is wrong instead of a traceback;
* enforces the package's `ServingLimits` (body size, JSON depth, rows, text and question length,
  windows per row, batch tokens) with a 413 or 400 naming the limit;
* answers 500, not MLflow's 400, when the model itself fails on a request that passed these checks;
* abandons the model's work when the client disconnects (uvicorn's `http.disconnect`): a
  cancellation flag the engine checks between batches.

Importable with only mlflow and the model's dependencies (no kopf, kubernetes or boto3).

    python -m qa_operator.model.serving [serve] --model-dir /opt/ml/model --host 0.0.0.0 --port 8080
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import pandas as pd

from qa_operator.model.config import REQUEST_PARAMS, InferenceConfig
from qa_operator.model.inputs import InvalidInput, questions_and_texts
from qa_operator.model.limits import (
    ESTIMATED_TOKEN_COUNTS,
    ServingLimits,
    TokenCounts,
    cancellation,
    from_model_config,
    json_depth,
    text_tokens_upper_bound,
    windows_needed,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_MODEL_DIR = "/opt/ml/model"
DEFAULT_PORT = 8080
MLFLOW_JSON_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
JSON = "application/json"
CSV = "text/csv"


log = logging.getLogger(__name__)


class BadRequest(Exception):
    """The request cannot be scored; the message is returned to the client with status 400."""

    status = 400
    error_code = "BAD_REQUEST"


class RequestTooLarge(BadRequest):
    """The request exceeds a size limit; status 413, the message names the limit."""

    status = 413
    error_code = "REQUEST_TOO_LARGE"


def normalise_json(payload: Any) -> dict[str, Any]:
    """MLflow's request shape for any accepted JSON payload; raise BadRequest otherwise."""
    if isinstance(payload, list):
        if not payload:
            raise BadRequest("the request has no rows: send at least one question and text")
        if not all(isinstance(row, dict) for row in payload):
            raise BadRequest('a JSON list must hold objects like {"question": ..., "text": ...}')
        return {"dataframe_records": payload}
    if not isinstance(payload, dict):
        raise BadRequest(
            'expected a JSON object such as {"question": ..., "text": ...}, a list of them, or '
            f"MLflow's dataframe_split/dataframe_records; got {type(payload).__name__}"
        )
    if any(key in payload for key in MLFLOW_JSON_KEYS):
        return payload
    row = {k: v for k, v in payload.items() if k != "params"}
    wrapped: dict[str, Any] = {}
    if row and all(isinstance(v, list) for v in row.values()):
        lengths = {len(v) for v in row.values()}
        if len(lengths) != 1:
            raise BadRequest("column lists in the JSON object must all have the same length")
        wrapped["dataframe_records"] = [
            dict(zip(row, values, strict=True)) for values in zip(*row.values(), strict=True)
        ]
    else:
        wrapped["dataframe_records"] = [row]
    if "params" in payload:
        wrapped["params"] = payload["params"]
    return wrapped


def frame_from_json(request: dict[str, Any]) -> pd.DataFrame:
    """The table an MLflow-shaped JSON request describes (for validation only)."""
    try:
        if "dataframe_split" in request:
            split = request["dataframe_split"]
            if not isinstance(split, dict):
                raise BadRequest("dataframe_split must be an object with 'columns' and 'data'")
            return pd.DataFrame(split.get("data"), columns=split.get("columns"))
        for key in ("dataframe_records", "instances", "inputs"):
            if key in request:
                value = request[key]
                if isinstance(value, list):
                    return pd.DataFrame(value)
                if isinstance(value, dict) and all(isinstance(v, list) for v in value.values()):
                    return pd.DataFrame(value)  # columnar: {"question": [...], "text": [...]}
                return pd.DataFrame([value])
    except BadRequest:
        raise
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"the JSON payload does not describe a table: {exc}") from exc
    raise BadRequest(f"the JSON payload has none of the keys {', '.join(MLFLOW_JSON_KEYS)}")


def frame_from_csv(body: bytes) -> pd.DataFrame:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the CSV body is not valid UTF-8: {exc}") from exc
    if not text.strip():
        raise BadRequest("the CSV body is empty: send a header line and at least one row")
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise BadRequest(
            f"malformed CSV (a header line with question,text is needed): {exc}"
        ) from exc


def check_request(
    content_type: str,
    body: bytes,
    config: InferenceConfig | None = None,
    limits: ServingLimits | None = None,
    tokens: TokenCounts = ESTIMATED_TOKEN_COUNTS,
) -> bytes:
    """Validate an /invocations body against the package's `config` and `limits` (`tokens`
    counts the questions' tokens: the model's tokenizer, or an upper bound); return the body to
    hand to MLflow (JSON rewritten into MLflow's shape). Unknown content types pass through
    (MLflow answers them with 415) after the body size check."""
    config = config or InferenceConfig()
    limits = limits or ServingLimits()
    check_body_size(len(body), limits)
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime == JSON:
        payload = parse_json(body, limits.max_json_depth)
        request = normalise_json(payload)
        frame = frame_from_json(request)
        effective, changed = _check_params(request.get("params"), config, limits)
        _check_rows(frame, effective, limits, tokens, changed)
        return json.dumps(request).encode()
    if mime == CSV:
        _check_rows(frame_from_csv(body), config, limits, tokens, params_changed_windows=False)
    return body


def check_body_size(size: int, limits: ServingLimits) -> None:
    if size > limits.max_body_bytes:
        raise RequestTooLarge(
            f"the request body exceeds max_body_bytes={limits.max_body_bytes} bytes: "
            "send fewer or shorter rows per request"
        )


def parse_json(body: bytes, max_depth: int) -> Any:
    """json.loads, after checking the nesting depth without recursion."""
    # Depth is at most the count of opening brackets: most requests skip the scan.
    opening = body.count(b"[") + body.count(b"{")
    depth = json_depth(body) if opening > max_depth else opening
    if depth > max_depth:
        raise BadRequest(
            f"the JSON nests {depth} levels deep; max_json_depth={max_depth} "
            '(a request such as {"question": ..., "text": ...} needs 1 to 4)'
        )
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"malformed JSON: {exc}") from exc
    except RecursionError as exc:  # only if the depth scan misjudged malformed input
        raise BadRequest(f"the JSON nests too deeply (max_json_depth={max_depth})") from exc


def _check_rows(
    frame: pd.DataFrame,
    config: InferenceConfig,
    limits: ServingLimits,
    tokens: TokenCounts,
    params_changed_windows: bool,
) -> None:
    if len(frame) > limits.max_rows:
        raise RequestTooLarge(
            f"the request has {len(frame)} rows; max_rows={limits.max_rows}: "
            "split it into several requests"
        )
    try:
        questions, texts = questions_and_texts(frame)
    except InvalidInput as exc:
        raise BadRequest(str(exc)) from exc
    for row, (question, text) in enumerate(zip(questions, texts, strict=True)):
        if len(question) > limits.max_question_chars:
            raise RequestTooLarge(
                f"row {row}: the question has {len(question)} characters; "
                f"max_question_chars={limits.max_question_chars}"
            )
        if len(text) > limits.max_text_chars:
            raise RequestTooLarge(
                f"row {row}: the text has {len(text)} characters; "
                f"max_text_chars={limits.max_text_chars}"
            )
    _check_windows(questions, texts, config, limits, tokens, params_changed_windows)


def _check_windows(
    questions: list[str],
    texts: list[str],
    config: InferenceConfig,
    limits: ServingLimits,
    tokens: TokenCounts,
    params_changed_windows: bool,
) -> None:
    # The request's own params make it a 400 (ask differently); the package's settings a 413.
    error = BadRequest if params_changed_windows else RequestTooLarge
    settings = f"max_seq_length={config.max_seq_length}, doc_stride={config.doc_stride}"
    for row, (question_tokens, text) in enumerate(
        zip(tokens.questions(questions), texts, strict=True)
    ):
        windows = windows_needed(
            text_tokens_upper_bound(text),
            question_tokens,
            tokens.special_per_pair,
            config.max_seq_length,
            config.doc_stride,
        )
        if windows is None:
            raise BadRequest(
                f"row {row}: the question ({question_tokens} tokens) leaves no room for the text "
                f"in a window of {settings}: ask a shorter question or use a larger "
                "max_seq_length or smaller doc_stride"
            )
        if windows > limits.max_windows_per_row:
            raise error(
                f"row {row}: the text may need up to {windows} windows at {settings}; "
                f"max_windows_per_row={limits.max_windows_per_row}: send a shorter text"
                + (" or a smaller doc_stride" if params_changed_windows else "")
            )


def _check_params(
    params: Any, config: InferenceConfig, limits: ServingLimits
) -> tuple[InferenceConfig, bool]:
    """The settings this request runs with, and whether its params change the windowing."""
    if params is None:
        return config, False
    if not isinstance(params, dict):
        raise BadRequest("params must be a JSON object of setting names to values")
    overrides = {k: v for k, v in params.items() if k in REQUEST_PARAMS and v is not None}
    try:
        effective = config.merged(overrides)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"bad params: {exc}") from exc
    batch_tokens = effective.batch_size * effective.max_seq_length
    if overrides.keys() & {"batch_size", "max_seq_length"} and (
        batch_tokens > limits.max_batch_tokens
    ):
        raise BadRequest(
            f"bad params: batch_size={effective.batch_size} x max_seq_length="
            f"{effective.max_seq_length} = {batch_tokens} tokens per batch exceeds "
            f"max_batch_tokens={limits.max_batch_tokens}"
        )
    return effective, bool(overrides.keys() & {"max_seq_length", "doc_stride"})


# MLflow answers 400 when the model raises, as if the caller were at fault. The request passed
# this layer's checks, so it is the model's failure: SageMaker callers (and the smoke test) get 500.
MLFLOW_MODEL_FAILURE = b"Encountered an unexpected error while evaluating the model"


class SageMakerLayer:
    """ASGI middleware in front of MLflow's scoring app; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        config: InferenceConfig | None = None,
        limits: ServingLimits | None = None,
        tokens: TokenCounts = ESTIMATED_TOKEN_COUNTS,
    ) -> None:
        self.app = app
        self.config = config or InferenceConfig()
        self.limits = limits or ServingLimits()
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].rstrip("/") == "/invocations"
        ):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            declared = headers.get("content-length", "").strip()
            if declared.isdigit():
                check_body_size(int(declared), self.limits)
            body = await _read_body(receive, self.limits)
            if body is None:
                return  # the client went away while sending
            body = check_request(
                headers.get("content-type", ""), body, self.config, self.limits, self.tokens
            )
        except BadRequest as exc:
            await _send_json(send, exc.status, {"error_code": exc.error_code, "message": str(exc)})
            return
        scope = dict(scope)
        scope["headers"] = [
            (k, v) for k, v in scope["headers"] if k.lower() != b"content-length"
        ] + [(b"content-length", str(len(body)).encode())]
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        # MLflow runs the model in a thread (asyncio.to_thread, which copies this context); the
        # engine checks the flag between batches, and the watcher sets it when uvicorn reports
        # that the client disconnected.
        answered = False
        held_400: Message | None = None

        async def send_noting_the_end(message: Message) -> None:
            nonlocal answered, held_400
            if message["type"] == "http.response.start" and message["status"] == 400:
                held_400 = message  # a model failure or a real 400: the body tells
                return
            if message["type"] == "http.response.body" and held_400 is not None:
                start, held_400 = held_400, None
                if MLFLOW_MODEL_FAILURE in message.get("body", b""):
                    start = {**start, "status": 500}
                await send(start)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True  # before the await: uvicorn reports a disconnect once it is sent
            await send(message)

        gone = threading.Event()
        watcher = asyncio.create_task(_watch_disconnect(receive, gone, lambda: answered))
        try:
            with cancellation(gone):
                await self.app(scope, replay, send_noting_the_end)
        finally:
            watcher.cancel()
        if gone.is_set():
            log.warning("client disconnected before its /invocations answer was sent")


async def _watch_disconnect(
    receive: Receive, gone: threading.Event, answered: Callable[[], bool]
) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    if not answered():
        gone.set()


async def _read_body(receive: Receive, limits: ServingLimits) -> bytes | None:
    """The request body, read until it ends; None if the client disconnected first; raise
    RequestTooLarge as soon as it passes max_body_bytes (the rest is never read)."""
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        check_body_size(size, limits)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_json(send: Send, status: int, content: dict[str, Any]) -> None:
    data = json.dumps(content).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", JSON.encode()),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


def build_app(model_dir: str) -> SageMakerLayer:
    """Load the package at `model_dir` and return the ASGI app that serves it."""
    import mlflow.pyfunc
    from mlflow.pyfunc import scoring_server

    model = mlflow.pyfunc.load_model(model_dir)
    try:
        config, limits = from_model_config(dict(model.model_config or {}))
    except (ValueError, TypeError):
        # Not one of our packages: check params against the defaults.
        config, limits = InferenceConfig(), ServingLimits()
    token_counts = getattr(model.unwrap_python_model(), "token_counts", None)
    tokens = token_counts() if callable(token_counts) else ESTIMATED_TOKEN_COUNTS
    log.info("serving limits: %s", limits)
    return SageMakerLayer(scoring_server.init(model), config, limits, tokens)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m qa_operator.model.serving",
        description="Serve a packaged QA model under SageMaker's container contract.",
    )
    parser.add_argument("command", nargs="?", default="serve", choices=["serve"])
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", DEFAULT_MODEL_DIR))
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("SAGEMAKER_BIND_TO_PORT", DEFAULT_PORT))
    )
    args = parser.parse_args(argv)
    # Our loggers (device, kernels) next to uvicorn's, in the container log SageMaker ships.
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    import uvicorn

    app = build_app(args.model_dir)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
