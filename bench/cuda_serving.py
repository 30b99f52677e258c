"""The CUDA serving path, run once on a GPU machine: the real serving entry on the GPU and on the
CPU of the same machine, same package, same requests; then the engine's throughput on both.

    python bench/cuda_serving.py --model-dir DIR --out OUT      # on a machine with a CUDA GPU

1. packages the HuggingFace model at DIR (the trained tiny QA model, see model/trained.py) with
   `build_package`, as the operator does;
2. starts `python -m qa_operator.model.serving serve` twice, once seeing the GPU and once with
   CUDA_VISIBLE_DEVICES="" (the CPU), asks each the post's three questions and records the
   answers, the device line of the log and the request latencies;
3. measures rows/s of QAEngine for a bert-base-shaped model (random weights) on both devices,
   fp32, on the benchmark's paragraph and sentence workloads.

Writes OUT/cuda_serving.json and the two server logs; the last line printed is the JSON. The
figures recorded in docs/model.md came from one such run on the device named there.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "operator"))
sys.path.insert(0, str(REPO / "bench"))

POST_TEXT = "My name is Alex, I am 32 and live in Copenhagen."
POST_QUESTIONS = ("What is my name?", "How old am I?", "Where do I live?")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(url: str, payload: object) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def serve_and_ask(package: Path, out: Path, name: str, env: dict[str, str]) -> dict[str, Any]:
    port = _free_port()
    log = out / f"server-{name}.log"
    pythonpath = os.pathsep.join(filter(None, [str(REPO / "operator"), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "qa_operator.model.serving", "serve"]
    command += ["--model-dir", str(package), "--host", "127.0.0.1", "--port", str(port)]
    started = time.monotonic()
    with log.open("wb") as handle:
        process = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, env={**env, "PYTHONPATH": pythonpath}
        )
    try:
        url = f"http://127.0.0.1:{port}"
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} server exited:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
            if time.monotonic() - started > 300:
                raise RuntimeError(f"{name} server: no /ping in 300 s")
        ready_s = time.monotonic() - started
        rows = [{"question": q, "text": POST_TEXT} for q in POST_QUESTIONS]
        latencies, answers = [], []
        for _ in range(20):
            begin = time.perf_counter()
            answers = _post(f"{url}/invocations", rows)["predictions"]
            latencies.append(time.perf_counter() - begin)
    finally:
        process.terminate()
        process.wait(30)
    device_lines = [line for line in log.read_text().splitlines() if "QA model runs on" in line]
    return {
        "answers": [answer["answer"] for answer in answers],
        "device_log": device_lines[-1].split(": ", 1)[-1] if device_lines else None,
        "ping_ready_s": round(ready_s, 2),
        "request_ms_median": round(1000 * statistics.median(latencies[1:]), 2),
    }


def engine_throughput(device: str, rounds: int = 5) -> dict[str, float]:
    import torch

    from qa_operator.model.config import InferenceConfig
    from qa_operator.model.inference import QAEngine, prepare_model
    from qa_operator.model.tiny import build_tiny_qa_model
    from qa_throughput import SIZES, make_inputs

    tokenizer, model = build_tiny_qa_model(0, **SIZES["bert-base"])
    model.to(device)
    model = prepare_model(model, "none", onednn=device == "cpu")
    engine = QAEngine(tokenizer, model, InferenceConfig())
    result = {}
    for workload, rows in (("paragraphs", 64), ("sentences", 256)):
        questions, texts = make_inputs(rows, seed=1, workload=workload)
        engine.answer(questions[:8], texts[:8])  # warm-up: kernels, allocator
        best = float("inf")
        for _ in range(rounds):
            if device == "cuda":
                torch.cuda.synchronize()
            begin = time.perf_counter()
            engine.answer(questions, texts)
            best = min(best, time.perf_counter() - begin)
        result[workload] = round(rows / best, 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-dir", type=Path, help="a HuggingFace QA model to package")
    source.add_argument("--package", type=Path, help="an MLflow package made by build_package")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--no-throughput", action="store_true", help="serving checks only")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    import torch

    from qa_operator.model.config import InferenceConfig
    from qa_operator.model.packaging import build_package, load_package

    if args.package is not None:  # packaging needs the full mlflow distribution; serving does not
        package = load_package(args.package)
    else:
        package = build_package(args.model_dir, args.out / "package", InferenceConfig())
    report: dict[str, Any] = {
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_threads": torch.get_num_threads(),
        "package_digest": package.digest,
    }
    base_env = dict(os.environ)
    report["serving_gpu"] = serve_and_ask(package.path, args.out, "gpu", base_env)
    report["serving_cpu"] = serve_and_ask(
        package.path, args.out, "cpu", {**base_env, "CUDA_VISIBLE_DEVICES": ""}
    )
    report["same_answers"] = report["serving_gpu"]["answers"] == report["serving_cpu"]["answers"]
    devices = ["cuda", "cpu"] if torch.cuda.is_available() else ["cpu"]
    if not args.no_throughput:
        report["bert_base_fp32_rows_per_s"] = {
            device: engine_throughput(device) for device in devices
        }
    text = json.dumps(report)
    (args.out / "cuda_serving.json").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
