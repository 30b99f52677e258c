"""From `kubectl apply` to Ready on the local stack, step by step; and `make demo`'s wall time.

    make bench      # or: .venv/bin/python bench/apply_to_ready.py [--runs 3] [--no-demo]

First the serving image of this checkout is built, pushed and unpacked (or found in the caches),
then `python -m devstack.demo` runs once as a subprocess and its wall time is printed: warm caches
(the control plane, the serving image and its unpacked rootfs, the trained model). For a cold
figure run the demo with empty QA_OPERATOR_CACHE and XDG_CACHE_HOME directories: it adds the Go
build, the serving image build, the model's training and the image's first unpack.

Then a local stack starts in this process with the operator as the demo runs it, and one resource
(manifests/examples/tiny-qa.yaml under another name) is applied, taken to Ready and deleted,
`--runs` times after one warm-up run. Each run is split by what the stack itself records, to the
millisecond:

* packaging: apply -> the package's upload to S3 starts (the operator sees the resource, reads
  the model from S3, builds and archives the MLflow package; each run sets its own
  maxAnswerLength, so each is packaged anew rather than taken from the operator's cache);
* upload + image: -> CreateModel (the upload; the serving image is pinned by digest: no call);
* SageMaker calls: CreateModel -> CreateEndpoint (Model, EndpointConfig, Endpoint created);
* image pull + model data: -> the container starts (the rootfs from the cache, model.tar.gz
  extracted to /opt/ml/model);
* container start: -> its /ping answers 200 (Python, torch and the model load);
* to Ready: -> Ready=True (the operator's next poll sees InService, runs the smoke test, writes
  status); the smoke test's own invocation time is status.smokeTest.latencyMs.

moto's request log (its `moto_ext` logger, in this process) gives the first five boundaries; the
resource is read every 0.1 s for Ready. The median of the runs is printed last.

Then `--instant-runs` times, with the operator restarted with the default poll settings (as
users run it; the local stack polls every 0.5-2 s), SageMaker instant (moto's endpoints without
the container runtime: InService as soon as created) and the resource's smoke test off: apply ->
Ready is then the operator's own latency (seeing the resource, packaging, the SageMaker calls,
the next look at the endpoint, the status write). The same instant runs then repeat with the
baseline, the operator with the scale optimisations switched off
(bench/unoptimised_operator.py: after creating the endpoint it waits the poll backoff before it
looks again), and the ratio of the medians (baseline / shipped) is printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "operator"), str(REPO)]

from devstack.demo import (  # noqa: E402
    EXAMPLE,
    current,
    local_operator_env,
    push_serving_image,
    start_operator,
    upload_model,
)
from devstack.moto_ext.controls import CONTROLS  # noqa: E402
from devstack.stack import LocalStack  # noqa: E402

NAMESPACE = "default"
SHIPPED_OPERATOR = ("-m", "qa_operator.cli")
BASELINE_OPERATOR = (str(REPO / "bench" / "unoptimised_operator.py"),)
READY_TIMEOUT_S = 600.0
PHASES = (
    "packaging",
    "upload + image",
    "SageMaker calls",
    "image pull + model data",
    "container start (/ping)",
    "to Ready (poll, smoke test)",
)


class Recorder(logging.Handler):
    """Keeps moto_ext's records (request lines, the runtime's container events) with their times."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.created, record.getMessage()))

    def first(self, after: float, *needles: str) -> float:
        for created, message in list(self.records):
            if created >= after and any(needle in message for needle in needles):
                return created
        raise LookupError(f"no record {needles} after {after}")


@dataclass
class Run:
    total: float
    phases: dict[str, float]
    smoke_ms: int | None


def warm_serving_image(state_dir: Path) -> float:
    """This checkout's serving image built, pushed to the registry cache and unpacked into the
    rootfs cache, as a previous run of the demo leaves them."""
    started = time.monotonic()
    with LocalStack(state_dir, say=lambda line: None) as stack:
        stack.containers.pull(push_serving_image(stack, say=lambda line: None))
    return time.monotonic() - started


def measure_demo(state_dir: Path) -> float:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "devstack.demo", "--state-dir", str(state_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"the demo failed ({done.returncode}):\n{done.stdout[-6000:]}")
    return seconds


def read(api: Any, name: str) -> dict[str, Any] | None:
    from kubernetes.client.exceptions import ApiException

    try:
        found: dict[str, Any] = api.get_namespaced_custom_object(
            "serving.qaoperator.io", "v1alpha1", NAMESPACE, "qamodeldeployments", name
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return found


def one_run(stack: LocalStack, api: Any, recorder: Recorder, name: str, answer_length: int) -> Run:
    body = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"]["name"] = name
    # A setting of its own, so that the operator packages it anew (its cache would serve it).
    body["spec"]["model"]["inference"]["maxAnswerLength"] = answer_length
    endpoint = f"{NAMESPACE}-{name}"
    applied = time.time()
    stack.cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump(body))
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        obj = read(api, name)
        if obj is not None and current(obj, "Ready"):
            ready = time.time()
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"{name} not Ready in {READY_TIMEOUT_S:.0f} s: {obj}")
        time.sleep(0.1)
    upload = recorder.first(applied, "request: s3 PutObject", "request: s3 CreateMultipartUpload")
    create_model = recorder.first(upload, "request: sagemaker CreateModel")
    create_endpoint = recorder.first(create_model, "request: sagemaker CreateEndpoint")
    started = recorder.first(create_endpoint, f"endpoint {endpoint} variant")
    pinged = recorder.first(started, f"endpoint {endpoint}: every container passed /ping")
    marks = [applied, upload, create_model, create_endpoint, started, pinged, ready]
    smoke = (obj.get("status") or {}).get("smokeTest") or {}
    stack.cluster.kubectl("delete", "qamd", name, "-n", NAMESPACE, "--wait=false")
    while read(api, name) is not None:
        if time.monotonic() > deadline + READY_TIMEOUT_S:
            raise SystemExit(f"{name} not deleted")
        time.sleep(0.2)
    return Run(
        total=ready - applied,
        phases={phase: b - a for phase, a, b in zip(PHASES, marks, marks[1:], strict=False)},
        smoke_ms=smoke.get("latencyMs"),
    )


def instant_run(stack: LocalStack, api: Any, name: str, answer_length: int) -> float:
    """apply -> Ready with SageMaker instant (no container runtime installed) and no smoke test."""
    body = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"]["name"] = name
    body["spec"]["model"]["inference"]["maxAnswerLength"] = answer_length
    body["spec"]["smokeTest"] = {"enabled": False}
    applied = time.monotonic()
    stack.cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump(body))
    while not current(read(api, name) or {}, "Ready"):
        if time.monotonic() > applied + READY_TIMEOUT_S:
            raise SystemExit(f"{name} not Ready in {READY_TIMEOUT_S:.0f} s")
        time.sleep(0.05)
    total = time.monotonic() - applied
    stack.cluster.kubectl("delete", "qamd", name, "-n", NAMESPACE, "--wait=false")
    while read(api, name) is not None:
        if time.monotonic() > applied + 2 * READY_TIMEOUT_S:
            raise SystemExit(f"{name} not deleted")
        time.sleep(0.2)
    return total


def instant_runs(
    stack: LocalStack,
    api: Any,
    env: dict[str, str],
    work: Path,
    entry: tuple[str, ...],
    args: argparse.Namespace,
) -> list[float]:
    """`--instant-runs` runs with a fresh operator started from `entry` (none for the baseline
    with --no-baseline)."""
    label = "baseline" if entry == BASELINE_OPERATOR else "instant"
    if (label == "baseline" and not args.baseline) or not args.instant_runs:
        return []
    operator = start_operator(env, work / f"operator-{label}.log", entry)
    stack.on_stop(operator.stop)
    first_length = 60 if label == "baseline" else 40
    times = []
    try:
        for i in range(args.instant_runs):
            times.append(instant_run(stack, api, f"bench-{label}-{i + 1}", first_length + i))
            print(f"  {label} run {i + 1}: {times[-1]:.2f} s to Ready", flush=True)
    finally:
        operator.stop()
    return times


def table(runs: list[Run]) -> str:
    header = f"{'apply -> Ready':<30}" + "".join(f"{f'run {i + 1}':>10}" for i in range(len(runs)))
    lines = [header + f"{'median':>10}"]
    for phase in PHASES:
        values = [run.phases[phase] for run in runs]
        cells = "".join(f"{v:>9.2f}s" for v in values)
        lines.append(f"  {phase:<28}{cells}{statistics.median(values):>9.2f}s")
    totals = [run.total for run in runs]
    cells = "".join(f"{v:>9.2f}s" for v in totals)
    lines.append(f"  {'total':<28}{cells}{statistics.median(totals):>9.2f}s")
    smokes = [run.smoke_ms for run in runs if run.smoke_ms is not None]
    if smokes:
        cells = "".join(f"{f'{run.smoke_ms} ms':>10}" for run in runs)
        lines.append(f"  {'smoke test invocation':<28}{cells}{statistics.median(smokes):>8.0f}ms")
    return "\n".join(lines)


def report(
    runs: list[Run], instant: list[float], baseline: list[float], figures: dict[str, Any]
) -> None:
    print()
    if runs:
        print(table(runs))
    if "demo_wall_s" in figures:
        print(f"\npython -m devstack.demo, warm: {figures['demo_wall_s']:.1f} s wall time")
    if runs:
        figures["apply_to_ready_median_s"] = round(statistics.median(r.total for r in runs), 2)
        figures["phases_median_s"] = {
            phase: round(statistics.median(r.phases[phase] for r in runs), 2) for phase in PHASES
        }
    if instant:
        cells = ", ".join(f"{v:.2f}" for v in instant)
        print(f"\napply -> Ready, SageMaker instant, no smoke test: {cells} s")
        figures["instant_apply_to_ready_s"] = [round(v, 2) for v in instant]
        figures["instant_apply_to_ready_median_s"] = round(statistics.median(instant), 2)
    if instant and baseline:
        cells = ", ".join(f"{v:.2f}" for v in baseline)
        ratio = statistics.median(baseline) / statistics.median(instant)
        print(f"  baseline (optimisations off): {cells} s; median baseline / shipped {ratio:.2f}")
        figures["baseline_instant_apply_to_ready_s"] = [round(v, 2) for v in baseline]
        figures["baseline_instant_apply_to_ready_median_s"] = round(statistics.median(baseline), 2)
        figures["instant_baseline_over_shipped"] = round(ratio, 2)
    print(json.dumps(figures))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-demo", action="store_true", help="skip timing `make demo`")
    parser.add_argument("--instant-runs", type=int, default=5)
    parser.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="skip the instant runs of the operator with the optimisations off",
    )
    args = parser.parse_args(argv)
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-apply-") as tmp:
        work = Path(tmp)
        if not args.no_demo:
            print("serving image: build, push and unpack (or find them cached) ...", flush=True)
            print(f"  {warm_serving_image(work / 'warm'):.1f} s", flush=True)
            print("python -m devstack.demo (what make demo runs), warm caches ...", flush=True)
            figures["demo_wall_s"] = round(measure_demo(work / "demo"), 1)
            print(f"  wall time: {figures['demo_wall_s']:.1f} s", flush=True)
        print("local stack, serving image, model, operator ...", flush=True)
        recorder = Recorder()
        logging.getLogger("moto_ext").addHandler(recorder)
        with LocalStack(work / "stack", say=lambda line: None) as stack:
            image = push_serving_image(stack, say=lambda line: None)
            model_uri = yaml.safe_load(EXAMPLE.read_text())["spec"]["model"]["s3"]["uri"]
            upload_model(stack.client("s3"), model_uri, say=lambda line: None)
            env = local_operator_env(stack, image, work / "operator-work")
            env["KUBECONFIG"] = str(stack.operator_kubeconfig())
            operator = start_operator(env, work / "operator.log")
            stack.on_stop(operator.stop)
            import kubernetes.client

            with stack.cluster.api_client() as client:
                api = kubernetes.client.CustomObjectsApi(client)
                warm_up = one_run(stack, api, recorder, "bench-warm-up", 20)
                print(f"  warm-up run: {warm_up.total:.2f} s to Ready", flush=True)
                runs = []
                for i in range(args.runs):
                    runs.append(one_run(stack, api, recorder, f"bench-{i + 1}", 21 + i))
                    print(f"  run {i + 1}: {runs[-1].total:.2f} s to Ready", flush=True)
                # As users run it: the default poll settings, not the local stack's quick ones;
                # then the same runs with the baseline operator (bench/unoptimised_operator.py).
                operator.stop()
                defaults = {k: v for k, v in env.items() if not k.startswith("QA_OPERATOR_POLL_")}
                CONTROLS.set_runtime(None)  # SageMaker instant: InService once created
                instant = instant_runs(stack, api, defaults, work, SHIPPED_OPERATOR, args)
                baseline = instant_runs(stack, api, defaults, work, BASELINE_OPERATOR, args)
    report(runs, instant, baseline, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
