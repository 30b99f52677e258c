"""`make demo`: package a tiny QA model, serve it with the real serving entry, ask it questions.

    python -m qa_operator.demo

Runs offline in about half a minute: the model is built locally with random weights, so its
answers are arbitrary substrings of the text. The point is the path, not the answers: the same
package and serving entry run a real model (e.g. bert-large-uncased-whole-word-masking-finetuned-
squad) on SageMaker.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

TEXT = "My name is Alex, I am 32 and live in Copenhagen."
QUESTIONS = ("What is my name?", "How old am I?", "Where do I live?")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, payload: object) -> object:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.3)
    raise RuntimeError(
        f"the server did not answer /ping in {timeout:.0f}s:\n{log.read_text()[-3000:]}"
    )


def main() -> int:
    from qa_operator.model.config import InferenceConfig
    from qa_operator.model.packaging import build_package, write_archive
    from qa_operator.model.tiny import make_tiny_qa_model_dir

    with tempfile.TemporaryDirectory(prefix="qa-demo-") as tmp:
        work = Path(tmp)
        print("1. Building a tiny BERT QA model (random weights, no download) ...")
        model_dir = make_tiny_qa_model_dir(work / "hf-model", seed=0)
        print("2. Packaging it as an MLflow model ...")
        package = build_package(model_dir, work / "package", InferenceConfig())
        archive_digest = write_archive(package, work / "model.tar.gz")
        print(f"   package digest {package.digest}")
        print(f"   model.tar.gz   {archive_digest}")
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        print(f"3. Serving it with `python -m qa_operator.model.serving serve` on {url} ...")
        log = work / "server.log"
        src = str(Path(__file__).resolve().parents[1])
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
        }
        command = [
            sys.executable,
            "-m",
            "qa_operator.model.serving",
            "serve",
            "--model-dir",
            str(package.path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        with open(log, "wb") as out:
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            _wait_ready(url, proc, log, timeout=180)
            print(f"4. Asking about: {TEXT!r}")
            rows = [{"question": q, "text": TEXT} for q in QUESTIONS]
            result = _post(f"{url}/invocations", rows)
            assert isinstance(result, dict)
            for question, answer in zip(QUESTIONS, result["predictions"], strict=True):
                print(
                    f"   {question:<18} -> {answer['answer']!r} "
                    f"(chars {answer['start']}-{answer['end']}, score {answer['score']:.4f})"
                )
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    print(
        "\nNote: the tiny model has random weights, so these answers are arbitrary (always an\n"
        "exact substring of the text, but not the right one). A fine-tuned model such as\n"
        "bert-large-uncased-whole-word-masking-finetuned-squad answers 'alex', '32', 'copenhagen'."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
