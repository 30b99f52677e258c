"""`make demo`: one `kubectl apply` of a QAModelDeployment becomes a SageMaker endpoint that
answers the post's three questions; then an update, and a delete that leaves nothing behind.

    python -m devstack.demo               # on the local stack (devstack/stack.py), offline
    python -m devstack.demo --existing    # on the cluster in KUBECONFIG and the AWS account

Steps, each timed: (a) start the local stack; (b) build (or reuse) the serving image and push it
to the stack's registry; (c) train (or reuse) the tiny QA model and upload it to S3 where the
example manifest says; (d) start the operator as users run it (`qa-operator run`, with the
ServiceAccount and RBAC of manifests/); (e) `kubectl apply -f manifests/examples/tiny-qa.yaml`
and watch it until Ready; (f) ask the endpoint through `sagemaker-runtime`; (g) change the spec
and watch the update until Ready; (h) delete it and list what is left in SageMaker and the
package bucket; (i) stop. Exit status 1 when an answer is wrong or a step fails.

With --existing nothing is started or built: the serving image (QA_OPERATOR_SERVING_IMAGE) and
the model's files in S3 must exist, the CRD must be installed, and the operator runs here with
the caller's KUBECONFIG, AWS credentials and QA_OPERATOR_* settings (or, with
--operator-running, the one already in the cluster does the work).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import yaml

from devstack.processes import free_port, stop
from devstack.stack import DEFAULT_STATE_DIR, REPO, LocalStack, interrupt_on_signals
from qa_operator.model.trained import HELD_OUT, POST_TEXT

EXAMPLE = REPO / "manifests" / "examples" / "tiny-qa.yaml"
PACKAGE_BUCKET = "qa-packages"  # QA_OPERATOR_BUCKET on the local stack
ROLE_NAME = "SageMakerExecution"
READY_TIMEOUT_S = 600.0  # local: packaging, then the container's start (torch import) to /ping
EXISTING_READY_TIMEOUT_S = 1800.0  # SageMaker provisions instances: minutes
OPERATOR_START_TIMEOUT_S = 120.0
LOG_LINES = 40


class StepFailed(RuntimeError):
    """A step did not reach its goal; the message says what was seen."""


# -- pieces shared with `python -m devstack up --operator` and the benchmark --------------------


def push_serving_image(stack: LocalStack, say: Callable[[str], None] = print) -> str:
    """This checkout's serving image, built onto the Debian base (layers from the builder's
    cache) and pushed to the stack's registry; returns host/repo@sha256:..."""
    from devstack.images import SERVING_REPOSITORY, build_project_image
    from qa_operator.imagebuild.cache import default_cache_dir

    if not any(default_cache_dir().glob("layers/*")):
        say(
            "  the first build on this machine: pip installs torch and the dependencies and "
            "every layer is compressed (4-8 minutes); cached after"
        )
    built = build_project_image(stack.registry.url, "serving", SERVING_REPOSITORY)
    say(f"  {built.uri}")
    say(f"  {built.bytes_uploaded:,} bytes uploaded (layers the registry already had: skipped)")
    if not any(stack.containers.cache_dir.glob("chain-*")):
        say(
            "  no image unpacked on this machine yet: the endpoint's first start unpacks the "
            "3.5 GB image (1-2 minutes); after a code change, only its app layer"
        )
    return built.uri


def upload_model(s3: Any, model_uri: str, say: Callable[[str], None] = print) -> None:
    """The tiny trained QA model's files (a HuggingFace model directory) under `model_uri`."""
    from qa_operator.model.trained import trained_qa_model_dir, trained_qa_model_path

    if not trained_qa_model_path().exists():
        say("  training the tiny QA model on generated sentences: about 75 s, once; cached after")
    model_dir = trained_qa_model_dir()
    say(f"  {model_dir}")
    bucket, prefix = split_s3_uri(model_uri)
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=bucket)
    files = sorted(path for path in model_dir.rglob("*") if path.is_file())
    for path in files:
        s3.upload_file(str(path), bucket, prefix + path.relative_to(model_dir).as_posix())
    size = sum(path.stat().st_size for path in files)
    say(f"  uploaded {len(files)} files ({size / 1024:,.0f} KiB) to {model_uri}")


def local_operator_env(stack: LocalStack, serving_image: str, work_dir: Path) -> dict[str, str]:
    """The operator's environment on the local stack: the AWS settings of aws.env, the package
    bucket and execution role (created here), the pushed serving image, quick polling. The
    caller's own QA_OPERATOR_* and AWS_* settings are left out: they name another world."""
    s3, iam = stack.client("s3"), stack.client("iam")
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=PACKAGE_BUCKET)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sagemaker.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    try:
        role = iam.create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=json.dumps(trust))
    except iam.exceptions.EntityAlreadyExistsException:
        role = iam.get_role(RoleName=ROLE_NAME)
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "QA_OPERATOR_")) or key == "QA_OPERATOR_CACHE"
    }
    return {
        **inherited,
        **stack.aws_env,
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": "1",
        "QA_OPERATOR_BUCKET": PACKAGE_BUCKET,
        "QA_OPERATOR_EXECUTION_ROLE_ARN": role["Role"]["Arn"],
        "QA_OPERATOR_SERVING_IMAGE": serving_image,
        "QA_OPERATOR_POLL_MIN_SECONDS": "0.5",
        "QA_OPERATOR_POLL_MAX_SECONDS": "2",
        "QA_OPERATOR_RESYNC_SECONDS": "5",
        "QA_OPERATOR_WORK_DIR": str(work_dir),
    }


@dataclass
class OperatorProcess:
    """`qa-operator run` as a subprocess, logging to `log_path`."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = LOG_LINES) -> str:
        return tail(self.log_path, lines)

    def stop(self) -> None:
        stop(self.process, timeout=20, sig=signal.SIGINT)  # kopf's graceful shutdown


def start_operator(
    env: dict[str, str], log_path: Path, entry: Sequence[str] = ("-m", "qa_operator.cli")
) -> OperatorProcess:
    """`qa-operator run --standalone` for all namespaces; returns once its liveness endpoint
    answers (kopf is connected and watching). `entry`: what python runs instead of the console
    script's module (a benchmark's baseline operator)."""
    port = free_port()
    command = [sys.executable, *entry, "run", "--standalone"]
    command.append(f"--liveness=http://127.0.0.1:{port}/healthz")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    operator = OperatorProcess(process, log_path)
    deadline = time.monotonic() + OPERATOR_START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise StepFailed(f"the operator exited ({process.returncode}) during startup")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return operator
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            operator.stop()
            raise StepFailed(
                f"the operator's /healthz did not answer in {OPERATOR_START_TIMEOUT_S:.0f} s"
            )
        time.sleep(0.3)


def split_s3_uri(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix


def tail(path: Path, lines: int = LOG_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for item in (obj or {}).get("status", {}).get("conditions", []):
        if item.get("type") == kind:
            return dict(item)
    return {}


def current(obj: dict[str, Any], kind: str) -> bool:
    """Is condition `kind` True for the spec the resource has now?"""
    found = condition(obj, kind)
    return found.get("status") == "True" and found.get("observedGeneration") == obj.get(
        "metadata", {}
    ).get("generation")


def given_up(obj: dict[str, Any]) -> bool:
    """Degraded with nothing in progress: the operator waits for a new spec (a retry in
    progress, e.g. of the smoke test, keeps Progressing True)."""
    return current(obj, "Degraded") and condition(obj, "Progressing").get("status") != "True"


# -- the demo -------------------------------------------------------------------------------


@dataclass
class Step:
    key: str
    title: str
    seconds: float | None = None


@dataclass
class Steps:
    """Numbered steps, each announced and timed."""

    done: list[Step] = field(default_factory=list)
    current: Step | None = None

    @contextlib.contextmanager
    def __call__(self, key: str, title: str) -> Iterator[None]:
        self.current = Step(key, title)
        print(f"\n({key}) {title}", flush=True)
        started = time.monotonic()
        yield
        self.current.seconds = time.monotonic() - started
        self.done.append(self.current)
        print(f"    ({key}) done in {self.current.seconds:.1f} s", flush=True)
        self.current = None

    def summary(self, total: float) -> str:
        width = max((len(step.title) for step in self.done), default=0)
        rows = [f"  ({s.key}) {s.title:<{width}} {s.seconds:6.1f} s" for s in self.done]
        return "\n".join(["Timing:", *rows, f"  {'total':<{width + 4}} {total:6.1f} s"])


def say(line: str) -> None:
    print(line, flush=True)


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.existing: bool = args.existing
        self.namespace: str = args.namespace
        self.state_dir: Path = args.state_dir
        self.operator_running: bool = args.operator_running
        self.ready_timeout: float = args.timeout or (
            EXISTING_READY_TIMEOUT_S if self.existing else READY_TIMEOUT_S
        )
        self.manifest: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
        self.name: str = self.manifest["metadata"]["name"]
        self.model_uri: str = args.model_uri or self.manifest["spec"]["model"]["s3"]["uri"]
        self.manifest["spec"]["model"]["s3"]["uri"] = self.model_uri
        self.steps = Steps()
        self.stack: LocalStack | None = None
        self.operator: OperatorProcess | None = None
        self.endpoint_name: str | None = None
        self.applied = False
        self.wrong = 0

    # -- running -----------------------------------------------------------------------------

    def run(self) -> int:
        started = time.monotonic()
        where = "the cluster in KUBECONFIG and the AWS account" if self.existing else "loopback"
        say(f"qa-operator demo: one `kubectl apply` becomes a SageMaker endpoint ({where})")
        with contextlib.ExitStack() as cleanup:
            try:
                self._steps(cleanup)
            except (Exception, KeyboardInterrupt) as error:
                self._report_failure(error)
                return 130 if isinstance(error, KeyboardInterrupt) else 1
        say("")
        say(self.steps.summary(time.monotonic() - started))
        if self.wrong:
            say(f"\n{self.wrong} answer(s) WRONG")
            return 1
        return 0

    def _steps(self, cleanup: contextlib.ExitStack) -> None:
        step = self.steps
        start = "Start the local stack: API server, registry, moto with SageMaker's runtime"
        with step("a", "Use the current cluster and AWS account" if self.existing else start):
            self._start(cleanup)
        with step("b", "The serving image"):
            image = self._serving_image()
        with step("c", "The tiny QA model, in S3"):
            self._model()
        with step("d", "Start the operator as users run it: qa-operator run"):
            self._start_operator(image, cleanup)
        with step("e", f"kubectl apply -f {EXAMPLE.relative_to(REPO)}, watch until Ready"):
            self._apply()
        with step("f", "Ask the endpoint the post's three questions (sagemaker-runtime)"):
            self._ask([question for question, _ in HELD_OUT])
        with step("g", "Change the spec (instanceCount 1 -> 2), watch the update until Ready"):
            self._update()
        with step("h", "kubectl delete, wait until it is gone, list what is left"):
            self._delete()
        with step("i", "Stop the operator" if self.existing else "Stop the local stack"):
            cleanup.close()

    def _report_failure(self, error: BaseException) -> None:
        failed = self.steps.current
        where = f"({failed.key}) {failed.title}" if failed else "the demo"
        if isinstance(error, KeyboardInterrupt):
            say(f"\nInterrupted in {where}: stopping")
            return
        say(f"\nFAILED in {where}: {type(error).__name__}: {error}")
        if self.existing and self.applied:
            say(
                f"\nqamd/{self.name} may be left in namespace {self.namespace}, with what it made "
                f"in AWS: `kubectl delete qamd {self.name} -n {self.namespace}` removes them "
                "while an operator runs."
            )
        if self.operator is not None:
            say(f"\n--- the operator's log ({self.operator.log_path}), last lines:")
            say(self.operator.log_tail())
        if self.stack is not None and self.endpoint_name is not None:
            say(f"\n--- the endpoint's container ({self.endpoint_name}), last lines:")
            say(self.stack.runtime.log_tail(self.endpoint_name) or "(no log)")
        if self.stack is not None:
            say(f"\n--- moto ({self.stack.run_dir / 'moto.log'}), last lines:")
            say(tail(self.stack.run_dir / "moto.log", 15))
            say(f"\nLogs: {self.stack.run_dir}")

    # -- (a) to (d) --------------------------------------------------------------------------

    def _start(self, cleanup: contextlib.ExitStack) -> None:
        if not self.existing:
            self.stack = cleanup.enter_context(LocalStack(self.state_dir, say=say))
            # This process and its children (kubectl, boto3) use the stack as any client would.
            for key in [k for k in os.environ if k.startswith("AWS_")]:
                del os.environ[key]
            os.environ.update(self.stack.aws_env)
            os.environ["KUBECONFIG"] = str(self.stack.kubeconfig)
            os.environ["PATH"] = f"{self.stack.bin_dir}{os.pathsep}{os.environ['PATH']}"
            os.environ["KUBECACHEDIR"] = str(self.stack.run_dir / "kubectl-cache")
            return
        if shutil.which("kubectl") is None:
            raise StepFailed("kubectl is not on PATH")
        server = self._kubectl(
            "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}", echo=False
        ).stdout
        self._kubectl("get", "crd", "qamodeldeployments.serving.qaoperator.io")
        identity = boto3.client("sts").get_caller_identity()
        say(f"  cluster {server}; the CRD is installed")
        say(f"  AWS account {identity['Account']} as {identity['Arn']}")
        if not self.operator_running:
            missing = [
                name
                for name in ("QA_OPERATOR_BUCKET", "QA_OPERATOR_SERVING_IMAGE")
                if not os.environ.get(name)
            ]
            if missing:
                raise StepFailed(f"set {', '.join(missing)} (README, 'Operator settings')")

    def _serving_image(self) -> str:
        if self.stack is not None:
            return push_serving_image(self.stack, say)
        image = os.environ.get("QA_OPERATOR_SERVING_IMAGE", "(the running operator's)")
        say(f"  QA_OPERATOR_SERVING_IMAGE={image} (it must exist)")
        return image

    def _model(self) -> None:
        s3 = boto3.client("s3")
        if self.stack is not None:
            upload_model(s3, self.model_uri, say)
            return
        bucket, prefix = split_s3_uri(self.model_uri)
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        names = {item["Key"].removeprefix(prefix) for item in listed}
        if "config.json" not in names:
            raise StepFailed(
                f"{self.model_uri} holds no HuggingFace model directory (no config.json); upload "
                "one there (e.g. the files of qa_operator.model.trained.trained_qa_model_dir()) "
                "or name another with --model-uri"
            )
        say(f"  {self.model_uri}: {len(listed)} objects")

    def _start_operator(self, image: str, cleanup: contextlib.ExitStack) -> None:
        if self.operator_running:
            say("  --operator-running: the operator in the cluster does the work")
            return
        if self.stack is not None:
            env = local_operator_env(self.stack, image, self.stack.run_dir / "operator-work")
            env["KUBECONFIG"] = str(self.stack.operator_kubeconfig())
            log_path = self.stack.run_dir / "operator.log"
            who = "as the qa-operator ServiceAccount (the RBAC of manifests/10-rbac.yaml)"
        else:
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            log_path = self.state_dir / "existing" / "operator.log"
            who = "with your KUBECONFIG and AWS credentials"
        say(f"$ qa-operator run --standalone        # {who}")
        for key in sorted(k for k in env if k.startswith("QA_OPERATOR_")):
            say(f"    {key}={env[key]}")
        self.operator = start_operator(env, log_path)
        cleanup.callback(self.operator.stop)
        say(f"  running (pid {self.operator.process.pid}), log {log_path}")

    # -- (e) to (h) --------------------------------------------------------------------------

    def _apply(self) -> None:
        shown = EXAMPLE.relative_to(REPO)
        self.applied = True
        if self.existing:
            say(f"$ kubectl apply -n {self.namespace} -f {shown}  # s3.uri: {self.model_uri}")
            body = yaml.safe_dump(self.manifest)
            self._kubectl("apply", "-n", self.namespace, "-f", "-", input=body, echo=False)
        else:
            self._kubectl("apply", "-n", self.namespace, "-f", str(shown))
        obj = self._watch("Ready", lambda o: o is not None and current(o, "Ready"))
        self._describe_ready(obj)

    def _describe_ready(self, obj: dict[str, Any] | None) -> None:
        status = (obj or {}).get("status", {})
        self.endpoint_name = status.get("endpointName")
        ready = condition(obj, "Ready")
        say(f"  Ready: {ready.get('reason')}: {ready.get('message')}")
        smoke = status.get("smokeTest")
        if smoke:
            say(
                f"  smoke test: {smoke.get('answer')!r} in {smoke.get('latencyMs')} ms "
                f"(passed: {smoke.get('passed')}, attempts: {smoke.get('attempts')})"
            )
        say(f"  endpoint {self.endpoint_name} on config {status.get('endpointConfigName')}")

    def _ask(self, questions: list[str]) -> None:
        status = self._get()["status"]
        client = boto3.client("sagemaker-runtime", region_name=status["region"])
        endpoint = status["endpointName"]
        expected = dict(HELD_OUT)
        say(f"  text: {POST_TEXT!r} (held out of the model's training)")
        say(f"  boto3.client('sagemaker-runtime').invoke_endpoint(EndpointName={endpoint!r}, ...)")
        for question in questions:
            started = time.monotonic()
            reply = client.invoke_endpoint(
                EndpointName=endpoint,
                ContentType="application/json",
                Accept="application/json",
                Body=json.dumps({"question": question, "text": POST_TEXT}),
            )
            millis = (time.monotonic() - started) * 1000
            answer = json.loads(reply["Body"].read())["predictions"][0]
            right = answer["answer"].strip().lower() == expected[question].lower()
            self.wrong += not right
            say(
                f"    {question:<18} -> {answer['answer']!r:<13} score {answer['score']:.3f}, "
                f"{millis:4.0f} ms  {'right' if right else 'WRONG, expected ' + expected[question]}"
            )

    def _update(self) -> None:
        before = self._get()["status"].get("endpointConfigName")
        patch = json.dumps({"spec": {"endpoint": {"instanceCount": 2}}})
        self._kubectl("patch", "qamd", self.name, "-n", self.namespace, "--type=merge", "-p", patch)
        generation = self._get()["metadata"]["generation"]
        obj = self._watch(
            f"Ready for generation {generation}",
            lambda o: o is not None and current(o, "Ready"),
        )
        self._describe_ready(obj)
        status = (obj or {}).get("status", {})
        after = status.get("endpointConfigName")
        if after == before:
            say(
                f"  endpoint config {after} kept: {status.get('desiredInstanceCount')} instances "
                "set in place (UpdateEndpointWeightsAndCapacities)"
            )
        else:
            say(f"  endpoint config {before} -> {after} (one UpdateEndpoint; the old one deleted)")
        self._ask([HELD_OUT[-1][0]])

    def _delete(self) -> None:
        status = self._get().get("status", {})
        package_uri = (status.get("modelPackage") or {}).get("uri") or ""
        self._kubectl("delete", "qamd", self.name, "-n", self.namespace, "--wait=false")
        self._watch("deleted", lambda o: o is None)
        self._events()
        self._nothing_left(status, package_uri)

    def _events(self) -> None:
        """What the operator did, from its Events. They are shown in the order the API server
        stored them: their timestamps have whole seconds only."""
        selector = f"involvedObject.name={self.name}"
        say(f"$ kubectl get events -n {self.namespace} --field-selector {selector}")
        listed = self._kubectl(
            "get", "events", "-n", self.namespace, "--field-selector", selector, "-o", "json",
            echo=False,
        ).stdout  # fmt: skip
        events = json.loads(listed)["items"]
        events.sort(key=lambda event: int(event["metadata"]["resourceVersion"]))
        width = max((len(event.get("reason", "")) for event in events), default=6)
        say(f"  {'REASON':<{width}}  MESSAGE")
        for event in events:
            message = event.get("message", "")
            message = message if len(message) <= 110 else message[:107] + "..."
            say(f"  {event.get('reason', ''):<{width}}  {message}")

    def _nothing_left(self, status: dict[str, Any], package_uri: str) -> None:
        """On the local stack: everything in SageMaker and under the operator's prefix of the
        package bucket. On AWS: what this resource's names and package prefix cover."""
        sagemaker: Any = boto3.client("sagemaker", region_name=status["region"])
        names = {} if self.stack else {"NameContains": status["endpointName"]}
        endpoints = sagemaker.list_endpoints(**names)["Endpoints"]
        configs = sagemaker.list_endpoint_configs(**names)["EndpointConfigs"]
        models = sagemaker.list_models(**names)["Models"]
        bucket, key = split_s3_uri(package_uri)
        # The key is <operator prefix>/_packages/<digest>/model.tar.gz, its references beside
        # it (package_refs.py); another resource with the same package keeps it on AWS.
        parts = key.split("/")
        prefix = "/".join(parts[:1] if self.stack else parts[:-1]) + "/"
        s3: Any = boto3.client("s3")
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
        objects = listed.get("Contents", [])
        for kind, items, field_name in (
            ("endpoint", endpoints, "EndpointName"),
            ("endpoint config", configs, "EndpointConfigName"),
            ("model", models, "ModelName"),
            ("package object", objects, "Key"),
        ):
            for item in items:
                say(f"  left: {kind} {item[field_name]}")
        counts = (
            f"{len(endpoints)} endpoints, {len(configs)} endpoint configs, {len(models)} models, "
            f"{len(objects)} package objects in s3://{bucket}/{prefix}"
        )
        if endpoints or configs or models or objects:
            raise StepFailed(f"left behind: {counts}")
        say(f"  nothing left: {counts}")

    # -- kubectl -----------------------------------------------------------------------------

    def _kubectl(
        self, *args: str, input: str | None = None, echo: bool = True
    ) -> subprocess.CompletedProcess[str]:
        if echo:
            say("$ kubectl " + shlex.join(args))
        done = subprocess.run(
            ["kubectl", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
            check=False,
        )
        if done.returncode != 0:
            raise StepFailed(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        if echo and done.stdout.strip():
            say("  " + done.stdout.rstrip().replace("\n", "\n  "))
        return done

    def _get(self) -> dict[str, Any]:
        found = self._find()
        if found is None:
            raise StepFailed(f"qamd/{self.name} is gone")
        return found

    def _find(self) -> dict[str, Any] | None:
        command = ["kubectl", "get", "qamd", self.name, "-n", self.namespace, "-o", "json"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            if "NotFound" in done.stderr:
                return None
            raise StepFailed(f"kubectl get qamd {self.name}: {done.stderr.strip()}")
        found: dict[str, Any] = json.loads(done.stdout)
        return found

    def _watch(
        self, what: str, until: Callable[[dict[str, Any] | None], bool]
    ) -> dict[str, Any] | None:
        """Stream `kubectl get qamd NAME -o wide --watch` while polling the resource until
        `until` holds, it is Degraded, the operator exits, or the deadline passes."""
        args = ["get", "qamd", self.name, "-n", self.namespace, "-o", "wide", "--watch"]
        say("$ kubectl " + shlex.join(args))
        watch = subprocess.Popen(
            ["kubectl", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        last_line = [time.monotonic()]

        def echo() -> None:
            # Each status write is a line; one that changes only the AGE column says nothing.
            assert watch.stdout is not None
            shown = ""
            for line in watch.stdout:
                last_line[0] = time.monotonic()
                without_age = line.rstrip().rsplit(None, 1)[0] if line.strip() else ""
                if without_age != shown:
                    shown = without_age
                    say("  " + line.rstrip())

        printer = threading.Thread(target=echo, daemon=True)
        printer.start()
        deadline = time.monotonic() + self.ready_timeout
        try:
            while True:
                obj = self._find()
                status = (obj or {}).get("status") or {}
                self.endpoint_name = status.get("endpointName") or self.endpoint_name
                if until(obj):
                    # Let the watch print the change that got us here (lines come within ms).
                    quiet_until = time.monotonic() + 4
                    while time.monotonic() < quiet_until and time.monotonic() - last_line[0] < 1:
                        time.sleep(0.1)
                    return obj
                if obj is not None and given_up(obj):
                    raise StepFailed(f"Degraded: {condition(obj, 'Degraded').get('message')}")
                if self.operator is not None and self.operator.process.poll() is not None:
                    raise StepFailed(f"the operator exited ({self.operator.process.returncode})")
                if time.monotonic() > deadline:
                    raise StepFailed(
                        f"not {what} after {self.ready_timeout:.0f} s; status: "
                        f"{json.dumps((obj or {}).get('status'), indent=1)}"
                    )
                time.sleep(0.5)
        finally:
            stop(watch, timeout=5)
            printer.join(timeout=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.demo",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "--existing",
        action="store_true",
        help="no local stack: the cluster in KUBECONFIG, the AWS account of the environment",
    )
    parser.add_argument("--namespace", "-n", default="default")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="the local stack's files and logs (default: %(default)s)",
    )
    parser.add_argument(
        "--model-uri", help="where the model's files are in S3 (default: the example's)"
    )
    parser.add_argument(
        "--operator-running",
        action="store_true",
        help="with --existing: an operator already runs in the cluster; start none here",
    )
    parser.add_argument("--timeout", type=float, help="seconds to wait for Ready (each time)")
    args = parser.parse_args(argv)
    if (args.model_uri or args.operator_running) and not args.existing:
        parser.error("--model-uri and --operator-running go with --existing")
    interrupt_on_signals()
    return Demo(args).run()


if __name__ == "__main__":
    sys.exit(main())
