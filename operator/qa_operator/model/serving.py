"""Serving the package under SageMaker's container contract with MLflow's scoring server.

SageMaker runs the image with the argument `serve` and expects GET /ping and POST /invocations on
port 8080, with the model extracted into /opt/ml/model. MLflow's scoring server does the work; a
thin ASGI layer in front of it

* accepts what SageMaker users send besides MLflow's own formats: a plain
  `{"question": ..., "text": ...}` object, a list of them, or one object of equal-length columns
  (rewritten into `dataframe_records`);
* checks the rows (columns present, values non-empty strings) and malformed JSON/CSV itself, so a
  bad request gets a 400 saying what is wrong instead of a traceback.

Importable with only mlflow and the model's dependencies (no kopf, kubernetes or boto3).

    python -m qa_operator.model.serving [serve] --model-dir /opt/ml/model --host 0.0.0.0 --port 8080
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import pandas as pd

from qa_operator.model.config import REQUEST_PARAMS, InferenceConfig
from qa_operator.model.inputs import InvalidInput, questions_and_texts

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


class BadRequest(Exception):
    """The request cannot be scored; the message is returned to the client with status 400."""


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


def check_request(content_type: str, body: bytes, config: InferenceConfig | None = None) -> bytes:
    """Validate an /invocations body (and its params against the package's `config`); return
    the body to hand to MLflow (JSON rewritten into MLflow's shape). Unknown content types pass
    through: MLflow answers them with 415."""
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime == JSON:
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadRequest(f"malformed JSON: {exc}") from exc
        request = normalise_json(payload)
        _check_rows(frame_from_json(request))
        _check_params(request.get("params"), config or InferenceConfig())
        return json.dumps(request).encode()
    if mime == CSV:
        _check_rows(frame_from_csv(body))
    return body


def _check_rows(frame: pd.DataFrame) -> None:
    try:
        questions_and_texts(frame)
    except InvalidInput as exc:
        raise BadRequest(str(exc)) from exc


def _check_params(params: Any, config: InferenceConfig) -> None:
    if params is None:
        return
    if not isinstance(params, dict):
        raise BadRequest("params must be a JSON object of setting names to values")
    try:
        config.merged({k: v for k, v in params.items() if k in REQUEST_PARAMS})
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"bad params: {exc}") from exc


class SageMakerLayer:
    """ASGI middleware in front of MLflow's scoring app; see the module docstring."""

    def __init__(self, app: ASGIApp, config: InferenceConfig | None = None) -> None:
        self.app = app
        self.config = config or InferenceConfig()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].rstrip("/") == "/invocations"
        ):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = check_request(headers.get("content-type", ""), body, self.config)
        except BadRequest as exc:
            await _send_json(send, 400, {"error_code": "BAD_REQUEST", "message": str(exc)})
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

        await self.app(scope, replay, send)


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
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
        config = InferenceConfig.from_dict(dict(model.model_config or {}))
    except (ValueError, TypeError):
        config = InferenceConfig()  # not one of our packages: check params against defaults
    return SageMakerLayer(scoring_server.init(model), config)


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
