"""`make demo`: package a tiny QA model, serve it with the real serving entry, ask it questions.

    python -m qa_operator.demo

Runs offline. The model is a tiny BERT trained locally on generated sentences about people
(`qa_operator.model.trained`): about a minute the first time on a machine, then taken from the
cache, so the demo takes about half a minute. The original post's sentence and its three questions
were held out of that training, and the model answers them right. The same package and serving
entry run a real model (e.g. bert-large-uncased-whole-word-masking-finetuned-squad) on SageMaker.
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

from qa_operator.model.trained import HELD_OUT, POST_TEXT

TEXT = POST_TEXT
QUESTIONS = tuple(question for question, _ in HELD_OUT)


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
    from qa_operator.model.trained import trained_qa_model_dir, trained_qa_model_path

    with tempfile.TemporaryDirectory(prefix="qa-demo-") as tmp:
        work = Path(tmp)
        cached = trained_qa_model_path().exists()
        print(
            "1. Taking the tiny BERT QA model from the cache ..."
            if cached
            else "1. Training a tiny BERT QA model on generated sentences (about a minute, once;\n"
            "   no download) ..."
        )
        model_dir = trained_qa_model_dir()
        print(f"   {model_dir}")
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
            print(f"4. Asking about: {TEXT!r} (held out of training)")
            rows = [{"question": q, "text": TEXT} for q in QUESTIONS]
            result = _post(f"{url}/invocations", rows)
            assert isinstance(result, dict)
            wrong = 0
            for (question, expected), answer in zip(HELD_OUT, result["predictions"], strict=True):
                right = answer["answer"].lower() == expected.lower()
                wrong += not right
                print(
                    f"   {question:<18} -> {answer['answer']!r} "
                    f"(chars {answer['start']}-{answer['end']}, score {answer['score']:.4f}) "
                    f"{'right' if right else 'WRONG'}"
                )
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    print(
        "\nNote: the tiny model never saw this sentence or these three questions about it in\n"
        "training (they were held out); it learned from other generated sentences about people.\n"
        "A fine-tuned model such as bert-large-uncased-whole-word-masking-finetuned-squad\n"
        "answers the same: 'alex', '32', 'copenhagen'."
    )
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
