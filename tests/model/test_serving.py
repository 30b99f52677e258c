"""The real serving process (MLflow's scoring server behind our SageMaker layer) on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

import qa_operator
from devstack.processes import free_port, stop
from qa_operator.model.config import InferenceConfig
from qa_operator.model.limits import ServingLimits
from qa_operator.model.packaging import ModelPackage, build_package
from qa_operator.model.tiny import make_tiny_qa_model_dir

pytestmark = pytest.mark.e2e

TEXT = "My name is Alex, I am 32 and live in Copenhagen."
OPERATOR_SRC = str(Path(qa_operator.__file__).resolve().parents[1])


@pytest.fixture(scope="module", params=["torch", "onnxruntime"])
def engine_package(
    request: pytest.FixtureRequest,
    tiny_qa_package: ModelPackage,
    tiny_qa_model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> ModelPackage:
    """The tiny model's package for each engine: every serving test runs on both."""
    if request.param == "torch":
        return tiny_qa_package
    dest = tmp_path_factory.mktemp("onnx-serving") / "package"
    return build_package(tiny_qa_model_dir, dest, InferenceConfig(engine="onnxruntime"))


@pytest.fixture(scope="module")
def server_log(engine_package: ModelPackage, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serving") / "server.log"


@pytest.fixture(scope="module")
def server(engine_package: ModelPackage, server_log: Path) -> Iterator[str]:
    with _serving(engine_package.path, server_log) as url:
        yield url


@contextlib.contextmanager
def _serving(model_dir: Path, log_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": OPERATOR_SRC}
    command = [
        sys.executable,
        "-m",
        "qa_operator.model.serving",
        "serve",
        "--model-dir",
        str(model_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd="/")
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"server exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}"
                )
            try:
                if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server did not answer /ping:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.3)
        yield url
    finally:
        stop(proc, timeout=20)


def invoke(server: str, body: Any, content_type: str = "application/json") -> requests.Response:
    if isinstance(body, (bytes, str)):
        return requests.post(
            f"{server}/invocations", data=body, headers={"Content-Type": content_type}, timeout=60
        )
    return requests.post(f"{server}/invocations", json=body, timeout=60)


def predictions(response: requests.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["predictions"]
    for row in rows:
        assert row["answer"] == TEXT[row["start"] : row["end"]]
        assert set(row) == {"answer", "score", "start", "end"}
    return rows


def test_ping(server: str) -> None:
    assert requests.get(f"{server}/ping", timeout=10).status_code == 200


def test_the_server_log_says_where_the_model_runs(
    server: str, server_log: Path, engine_package: ModelPackage
) -> None:
    import torch

    if "onnx" in (engine_package.path / "MLmodel").read_text():
        expected = "QA model runs on ONNX Runtime, CPU (quantize: none)"
    else:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        expected = f"QA model runs on {device} (quantize: none)"
    assert expected in server_log.read_text()


def test_all_request_formats_give_the_same_answers(server: str) -> None:
    q = "Where do I live?"
    bodies: list[tuple[Any, str]] = [
        ({"question": q, "text": TEXT}, "application/json"),
        ({"question": q, "context": TEXT}, "application/json"),
        ([{"question": q, "text": TEXT}], "application/json"),
        ({"question": [q], "text": [TEXT]}, "application/json"),
        ({"dataframe_records": [{"question": q, "text": TEXT}]}, "application/json"),
        (
            {"dataframe_split": {"columns": ["question", "text"], "data": [[q, TEXT]]}},
            "application/json",
        ),
        (f'question,text\n{q},"{TEXT}"\n', "text/csv"),
        (f'question,text\n{q},"{TEXT}"\n'.encode(), "text/csv; charset=utf-8"),
    ]
    results = [predictions(invoke(server, body, ct)) for body, ct in bodies]
    assert all(len(r) == 1 for r in results)
    first = results[0][0]
    for r in results[1:]:
        assert (r[0]["answer"], r[0]["start"]) == (first["answer"], first["start"])


def test_several_rows_keep_their_order(server: str) -> None:
    rows = [
        {"question": "What is my name?", "text": TEXT},
        {"question": "How old am I?", "text": TEXT},
        {"question": "Where do I live?", "text": TEXT},
    ]
    out = predictions(invoke(server, rows))
    assert len(out) == 3


def test_params_are_honoured(server: str) -> None:
    body = {"question": "Where do I live?", "text": TEXT, "params": {"max_answer_length": 1}}
    [row] = predictions(invoke(server, body))
    assert len(row["answer"].split()) == 1 and row["answer"].isalnum()


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        ('{"question": "q"', "application/json", "malformed JSON"),
        ({"question": "q"}, "application/json", "missing column"),
        ({"text": TEXT}, "application/json", "'question'"),
        ({"question": "", "text": TEXT}, "application/json", "'question' is empty"),
        ({"question": 7, "text": TEXT}, "application/json", "must be a non-empty string"),
        (
            [{"question": "q", "text": TEXT}, {"question": "q", "text": None}],
            "application/json",
            "row 1",
        ),
        (
            {"question": "q", "text": TEXT, "params": {"doc_stride": 1000}},
            "application/json",
            "doc_stride",
        ),
        ('question,text\n"q,t\n', "text/csv", "malformed CSV"),
        ("question\nq\n", "text/csv", "missing column"),
        ("question,text\nq,\n", "text/csv", "'text' is empty"),
    ],
)
def test_bad_requests_get_400_with_a_reason(
    server: str, body: Any, content_type: str, message: str
) -> None:
    response = invoke(server, body, content_type)
    assert response.status_code == 400, response.text
    payload = response.json()
    assert message in payload["message"]
    assert "Traceback" not in response.text


def test_unsupported_content_type_is_415(server: str) -> None:
    response = invoke(server, "question: q", "text/plain")
    assert response.status_code == 415


# --- limits (the package's default ServingLimits) ------------------------------------------

LIMITS = ServingLimits()


def test_a_body_over_max_body_bytes_is_413_before_it_is_read(server: str) -> None:
    body = b" " * (LIMITS.max_body_bytes + 1)
    response = invoke(server, body)
    assert response.status_code == 413, response.text
    assert response.json()["error_code"] == "REQUEST_TOO_LARGE"
    assert f"max_body_bytes={LIMITS.max_body_bytes}" in response.json()["message"]


def test_a_chunked_body_over_max_body_bytes_is_413(server: str) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(LIMITS.max_body_bytes // 65536 + 2):
            yield b" " * 65536

    response = requests.post(
        f"{server}/invocations",
        data=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 413, response.text
    assert f"max_body_bytes={LIMITS.max_body_bytes}" in response.json()["message"]


LONG_TEXT = " ".join(["x"] * 4_000)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (
            [{"question": "q", "text": "t"}] * (LIMITS.max_rows + 1),
            413,
            f"max_rows={LIMITS.max_rows}",
        ),
        (
            {"question": "q", "text": "t" * (LIMITS.max_text_chars + 1)},
            413,
            f"row 0: the text has {LIMITS.max_text_chars + 1} characters",
        ),
        (
            [{"question": "q", "text": TEXT}, {"question": "q" * 1_001, "text": TEXT}],
            413,
            f"row 1: the question has 1001 characters; max_question_chars={1_000}",
        ),
        (b"[" * 100_000 + b"]" * 100_000, 400, f"max_json_depth={LIMITS.max_json_depth}"),
        (
            {"question": "q", "text": [[[[[[[[["t"]]]]]]]]]},
            400,
            f"nests 10 levels deep; max_json_depth={LIMITS.max_json_depth}",
        ),
        (
            {"question": "q", "text": LONG_TEXT, "params": {"doc_stride": 370}},
            400,
            f"max_windows_per_row={LIMITS.max_windows_per_row}",
        ),
        (
            {"question": "q", "text": TEXT, "params": {"batch_size": 1024}},
            400,
            f"max_batch_tokens={LIMITS.max_batch_tokens}",
        ),
        (
            {
                "question": "q " * 200,
                "text": TEXT,
                "params": {"max_seq_length": 128, "doc_stride": 0},
            },
            400,
            "leaves no room for the text",
        ),
    ],
)
def test_requests_over_a_limit_are_refused_naming_it(
    server: str, body: Any, status: int, message: str
) -> None:
    response = invoke(server, body if isinstance(body, bytes) else json.dumps(body))
    assert response.status_code == status, response.text
    assert message in response.json()["message"]
    # The server is unharmed: a normal request still answers.
    assert len(predictions(invoke(server, {"question": "Who am I?", "text": TEXT}))) == 1


def test_a_long_text_within_the_limits_answers(server: str) -> None:
    text = TEXT + " " + " ".join(["Copenhagen"] * 5_000)
    body = {
        "question": "Where do I live?",
        "text": text,
        "params": {"batch_size": 21},
    }  # 8,064 tokens
    response = invoke(server, body)
    assert response.status_code == 200, response.text
    [row] = response.json()["predictions"]
    assert row["answer"] == text[row["start"] : row["end"]]


def test_a_client_that_goes_away_stops_the_work(server: str, server_log: Path) -> None:
    # Within every limit (about 4 MB), yet thousands of forward passes at batch_size 1: 40 rows
    # of 100,000 characters, about 200 windows each. Far more work than the second the client
    # waits before it goes away, on any machine.
    text = ("a " * (LIMITS.max_text_chars // 2))[: LIMITS.max_text_chars]
    rows = [{"question": "Which letter?", "text": text}] * 40
    body = json.dumps({"dataframe_records": rows, "params": {"batch_size": 1}}).encode()
    assert len(body) < LIMITS.max_body_bytes
    port = int(server.rsplit(":", 1)[1])
    before = len(ABANDONED.findall(server_log.read_text()))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        time.sleep(1)
    # A deadline for a stuck server, not a timing: the abandoned work itself would take minutes.
    gone = time.monotonic()
    while len(found := ABANDONED.findall(server_log.read_text())) == before:
        assert time.monotonic() < gone + 180, server_log.read_text()[-4000:]
        time.sleep(0.2)
    done, total = (int(n) for n in found[-1])
    assert done < total
    assert predictions(invoke(server, {"question": "Who am I?", "text": TEXT}))


ABANDONED = re.compile(r"request abandoned \(client gone\) after (\d+) of (\d+) batches")


def test_a_model_that_fails_on_a_valid_request_answers_500_not_400(tmp_path: Path) -> None:
    """Its position embeddings are shorter than any question: it loads, then fails every time."""
    model_dir = make_tiny_qa_model_dir(tmp_path / "model", seed=5, max_position_embeddings=8)
    package = build_package(model_dir, tmp_path / "package", InferenceConfig())
    with _serving(package.path, tmp_path / "server.log") as url:
        failed = invoke(url, {"question": "Where do I live?", "text": TEXT})
        refused = invoke(url, {"question": "", "text": TEXT})
    assert failed.status_code == 500, failed.text
    assert "unexpected error while evaluating the model" in failed.json()["message"]
    assert refused.status_code == 400, "a bad request is still the caller's fault"
