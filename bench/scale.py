"""N QAModelDeployments applied at once on the local stack: what the operator costs at scale.

    make bench      # or: .venv/bin/python bench/scale.py [--n 100 --n 500] [--resyncs 3]

For each N a fresh local stack (devstack: kube-apiserver, the extended moto, the registry) and one
operator (`qa-operator run --standalone`, the default poll settings, resyncs every
`--resync-seconds`) run in this process' machine; SageMaker is instant (moto's endpoints without
the container runtime: InService once created) and the smoke test is off, so what is measured is
the operator. The N resources share one model source (the demo's tiny model in S3) and are
applied with one `kubectl apply`. Reported per N:

* time from the apply to every resource Ready (the resources are listed every 0.5 s);
* AWS calls by operation during that rollout (the extended moto's own request counter);
* AWS calls and Kubernetes writes per resource per resync, over `--resyncs` resync intervals
  once everything is Ready (after one interval to settle);
* Kubernetes writes (POST, PUT, PATCH, DELETE) by resource during the rollout, from the API
  server's apiserver_request_total (a no-op PATCH counts); the N creates of the apply included;
* the package uploads: S3 PutObject and CreateMultipartUpload calls during the rollout (the
  archives and one empty reference marker per resource) and the model.tar.gz objects in the
  bucket once all are Ready;
* the operator's CPU time (user + system) and peak resident memory (VmHWM) over the whole run,
  and the largest peak of its packaging child processes seen while the rollout ran (sampled
  every 0.5 s; they exit when idle);
* which status fields (conditions by type) changed, and on how many resources, over the steady
  state's resync intervals: what its status PATCHes wrote;
* ListModels calls over the whole run: one per resource's superseded clean-up.

Each N runs twice, on a fresh stack each: first the baseline, the operator with the scale
optimisations switched off (bench/unoptimised_operator.py: a fixed poll wait after starting
endpoint work, DescribeEndpoint and ListTags on every pass, the whole status patch on every pass),
then the operator as shipped; the ratios are baseline / shipped. `--no-baseline` skips the first.
The last line is JSON.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "operator"), str(REPO)]

from devstack.demo import (  # noqa: E402
    EXAMPLE,
    PACKAGE_BUCKET,
    current,
    local_operator_env,
    start_operator,
    upload_model,
)
from devstack.moto_ext.controls import CONTROLS  # noqa: E402
from devstack.stack import LocalStack  # noqa: E402

NAMESPACE = "default"
# A digest no container runs: with SageMaker instant nothing pulls it (the resolver pins it).
SERVING_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/qa-serving@sha256:" + "ab" * 32
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE")
CLOCK_TICKS = 100  # os.sysconf("SC_CLK_TCK") on Linux


def aws_calls() -> collections.Counter[str]:
    with CONTROLS.lock:
        return collections.Counter(
            {f"{service}:{op}": n for (service, op), n in CONTROLS.calls.items()}
        )


def kube_writes(stack: LocalStack) -> collections.Counter[str]:
    """apiserver_request_total of write verbs, by 'VERB resource[/subresource]'."""
    text = stack.cluster.kubectl("get", "--raw", "/metrics").stdout
    counts: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(
            part.split("=", 1) for part in line[line.index("{") + 1 : line.index("}")].split(",")
        )
        verb = labels.get("verb", "").strip('"')
        if verb not in WRITE_VERBS:
            continue
        resource = labels.get("resource", "").strip('"')
        sub = labels.get("subresource", "").strip('"')
        counts[f"{verb} {resource}{'/' + sub if sub else ''}"] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def process_usage(pid: int) -> tuple[float, float]:
    """(CPU seconds, user + system; peak resident MiB) of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    status = Path(f"/proc/{pid}/status").read_text()
    hwm = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return cpu, int(hwm.split()[1]) / 1024


def packaging_children_peak_mib(pid: int) -> float:
    """The largest peak resident memory (VmHWM) among `pid`'s live packaging children (the
    child processes of packaging_process.py), 0 if none is up."""
    peak = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if (
                ppid != pid
                or b"qa_operator.packaging_process" not in (entry / "cmdline").read_bytes()
            ):
                continue
            status = (entry / "status").read_text()
        except (OSError, IndexError, ValueError):
            continue
        hwm = next((line for line in status.splitlines() if line.startswith("VmHWM:")), None)
        if hwm is not None:
            peak = max(peak, int(hwm.split()[1]) / 1024)
    return peak


def statuses(api: Any) -> dict[str, dict[str, Any]]:
    listed = api.list_namespaced_custom_object(
        "serving.qaoperator.io", "v1alpha1", NAMESPACE, "qamodeldeployments"
    )
    return {item["metadata"]["name"]: item.get("status") or {} for item in listed["items"]}


def status_changes(
    before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
) -> dict[str, int]:
    """How many resources changed each status field (a condition by its type) between two
    listings: what the steady state's status PATCHes wrote."""
    changed: collections.Counter[str] = collections.Counter()
    for name, old in before.items():
        new = after.get(name, {})
        for key in set(old) | set(new):
            if key == "conditions":
                old_c = {c["type"]: c for c in old.get(key, [])}
                new_c = {c["type"]: c for c in new.get(key, [])}
                for kind in set(old_c) | set(new_c):
                    if old_c.get(kind) != new_c.get(kind):
                        changed[f"conditions[{kind}]"] += 1
            elif old.get(key) != new.get(key):
                changed[key] += 1
    return dict(sorted(changed.items()))


def manifests(n: int) -> str:
    template = yaml.safe_load(EXAMPLE.read_text())
    template["spec"]["smokeTest"] = {"enabled": False}
    items = []
    for i in range(n):
        body = json.loads(json.dumps(template))
        body["metadata"] = {"name": f"qa-{i + 1}", "namespace": NAMESPACE}
        items.append(body)
    return yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items})


def ready_count(api: Any) -> int:
    listed = api.list_namespaced_custom_object(
        "serving.qaoperator.io", "v1alpha1", NAMESPACE, "qamodeldeployments"
    )
    return sum(1 for obj in listed["items"] if current(obj, "Ready"))


def package_archives(s3: Any) -> int:
    """The model.tar.gz objects in the package bucket: one per upload that made a new object."""
    listed = s3.list_objects_v2(Bucket=PACKAGE_BUCKET).get("Contents", [])
    return sum(1 for obj in listed if obj["Key"].endswith("/model.tar.gz"))


def delta(after: collections.Counter[str], before: collections.Counter[str]) -> dict[str, int]:
    return {key: after[key] - before[key] for key in sorted(after) if after[key] > before[key]}


def per_resource(counts: dict[str, int], divisor: int) -> dict[str, float]:
    return {key: round(value / divisor, 3) for key, value in counts.items()}


SHIPPED = ("-m", "qa_operator.cli")
BASELINE = (str(REPO / "bench" / "unoptimised_operator.py"),)
# Figures compared as baseline / shipped (smaller is better for each).
COMPARED = (
    "all_ready_s",
    "rollout_aws_calls_per_resource",
    "aws_calls_per_resync_per_resource_total",
    "kube_writes_per_resync_per_resource_total",
    "operator_cpu_s",
    "operator_peak_rss_mib",
)


def measure(
    n: int,
    work: Path,
    resyncs: int,
    resync_seconds: float,
    timeout: float,
    entry: tuple[str, ...] = SHIPPED,
) -> dict:
    import kubernetes.client

    label = "baseline" if entry == BASELINE else "shipped"
    with LocalStack(work / f"stack-{n}-{label}", say=lambda line: None) as stack:
        # moto's state lives in this process: each stack starts from an empty AWS, or the runs
        # before it leave endpoints of the same names (EndpointNameConflict).
        stack.moto.reset_extensions()
        reset = urllib.request.Request(f"{stack.endpoint_url}/moto-api/reset", method="POST")
        urllib.request.urlopen(reset, timeout=30).close()
        CONTROLS.set_runtime(None)  # SageMaker instant: InService once created
        model_uri = yaml.safe_load(EXAMPLE.read_text())["spec"]["model"]["s3"]["uri"]
        upload_model(stack.client("s3"), model_uri, say=lambda line: None)
        env = local_operator_env(stack, SERVING_IMAGE, work / f"operator-work-{n}-{label}")
        env = {k: v for k, v in env.items() if not k.startswith("QA_OPERATOR_POLL_")}
        env["QA_OPERATOR_RESYNC_SECONDS"] = str(resync_seconds)
        # SERVING_IMAGE is in no ECR here, and the figures in README were measured without
        # preflight's one-off IAM/ECR/S3 look-ups per resource: keep them comparable.
        env["QA_OPERATOR_PREFLIGHT"] = "off"
        env["KUBECONFIG"] = str(stack.operator_kubeconfig())
        operator = start_operator(env, work / f"operator-{n}-{label}.log", entry)
        stack.on_stop(operator.stop)
        pid = operator.process.pid
        with stack.cluster.api_client() as client:
            api = kubernetes.client.CustomObjectsApi(client)
            calls0, writes0 = aws_calls(), kube_writes(stack)
            applied = time.monotonic()
            stack.cluster.kubectl("apply", "-f", "-", input=manifests(n), timeout=600)
            ready, last_report, child_peak = 0, applied, 0.0
            while ready < n:
                if time.monotonic() - applied > timeout:
                    raise SystemExit(f"N={n}: {ready} Ready after {timeout:.0f} s")
                time.sleep(0.5)
                child_peak = max(child_peak, packaging_children_peak_mib(pid))
                ready = ready_count(api)
                if time.monotonic() - last_report > 15:
                    print(f"    {ready}/{n} Ready at {time.monotonic() - applied:.0f} s")
                    last_report = time.monotonic()
            all_ready = time.monotonic() - applied
            calls1, writes1 = aws_calls(), kube_writes(stack)
            packages = package_archives(stack.client("s3"))
            print(f"  N={n} ({label}): all Ready in {all_ready:.1f} s", flush=True)
            time.sleep(resync_seconds)  # the passes that follow Ready (clean-up, tags) settle
            calls2, writes2, statuses2 = aws_calls(), kube_writes(stack), statuses(api)
            time.sleep(resyncs * resync_seconds)
            calls3, writes3, statuses3 = aws_calls(), kube_writes(stack), statuses(api)
            cpu, peak_rss = process_usage(pid)
        rollout_calls = delta(calls1, calls0)
        steady_calls = delta(calls3, calls2)
        steady_writes = delta(writes3, writes2)
        return {
            "n": n,
            "operator": label,
            "all_ready_s": round(all_ready, 1),
            "rollout_aws_calls": rollout_calls,
            "rollout_aws_calls_per_resource": round(sum(rollout_calls.values()) / n, 2),
            # One superseded clean-up per resource lists its models once (twice for a stem that
            # matches more than 100 names: qa-1 matches qa-1, qa-1x and qa-1xx at N >= 200).
            "whole_run_list_models": delta(calls3, calls0).get("sagemaker:ListModels", 0),
            # Each PutObject or multipart upload of the rollout: the archives, and (since
            # packages are shared) one empty reference marker per resource.
            "rollout_s3_uploads": sum(
                rollout_calls.get(f"s3:{op}", 0) for op in ("PutObject", "CreateMultipartUpload")
            ),
            "package_archives_in_s3": packages,
            "rollout_kube_writes": delta(writes1, writes0),
            "resync_seconds": resync_seconds,
            "aws_calls_per_resync_per_resource": per_resource(steady_calls, n * resyncs),
            "aws_calls_per_resync_per_resource_total": round(
                sum(steady_calls.values()) / (n * resyncs), 3
            ),
            "kube_writes_per_resync_per_resource": per_resource(steady_writes, n * resyncs),
            "kube_writes_per_resync_per_resource_total": round(
                sum(steady_writes.values()) / (n * resyncs), 3
            ),
            "operator_cpu_s": round(cpu, 1),
            "operator_peak_rss_mib": round(peak_rss),
            "packaging_child_peak_rss_mib": round(child_peak),
            "steady_status_changes": status_changes(statuses2, statuses3),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, action="append", help="resources (repeatable; 100)")
    parser.add_argument("--resyncs", type=int, default=3)
    parser.add_argument("--resync-seconds", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=900.0, help="per N, to all Ready")
    parser.add_argument("--no-baseline", action="store_true", help="only the shipped operator")
    args = parser.parse_args(argv)
    results = []
    entries = [SHIPPED] if args.no_baseline else [BASELINE, SHIPPED]
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        for n in args.n or [100]:
            runs = {}
            for entry in entries:
                label = "baseline" if entry == BASELINE else "shipped"
                print(f"N={n} ({label}): local stack, operator, {n} resources ...", flush=True)
                runs[label] = measure(
                    n, Path(tmp), args.resyncs, args.resync_seconds, args.timeout, entry
                )
                print(json.dumps(runs[label], indent=1), flush=True)
            result: dict[str, Any] = {"n": n, **runs}
            if "baseline" in runs:
                result["baseline_over_shipped"] = ratios(runs["baseline"], runs["shipped"])
                print(f"N={n} baseline / shipped: {result['baseline_over_shipped']}", flush=True)
            results.append(result)
    print(json.dumps({"scale": results}))
    return 0


def ratios(baseline: dict[str, Any], shipped: dict[str, Any]) -> dict[str, float | None]:
    return {
        key: round(baseline[key] / shipped[key], 2) if shipped[key] else None for key in COMPARED
    }


if __name__ == "__main__":
    sys.exit(main())
