"""The real serving process (MLflow's scoring server behind our SageMaker layer) on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

import qa_operator
from qa_operator.model.packaging import ModelPackage
from support.processes import free_port, stop

pytestmark = pytest.mark.e2e

TEXT = "My name is Alex, I am 32 and live in Copenhagen."
OPERATOR_SRC = str(Path(qa_operator.__file__).resolve().parents[1])


@pytest.fixture(scope="module")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serving") / "server.log"


@pytest.fixture(scope="module")
def server(tiny_qa_package: ModelPackage, server_log: Path) -> Iterator[str]:
    port = free_port()
    log_path = server_log
    env = {**os.environ, "PYTHONPATH": OPERATOR_SRC}
    command = [
        sys.executable,
        "-m",
        "qa_operator.model.serving",
        "serve",
        "--model-dir",
        str(tiny_qa_package.path),
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


def test_the_server_log_says_where_the_model_runs(server: str, server_log: Path) -> None:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert f"QA model runs on {device} (quantize: none)" in server_log.read_text()


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
