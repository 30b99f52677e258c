"""A real etcd + kube-apiserver on loopback for tests, and the `Cluster` handle tests use.

No kube-controller-manager runs, so nothing that a controller does happens: namespaces stay
Terminating after a delete, owner references are not garbage collected, service accounts get no
automatic tokens or `default` account. The API server alone does validation, defaulting, RBAC,
admission, CRDs (Established is set by the API server itself) and TokenRequest.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from devstack.processes import free_port, stop

from .build import Binaries, locate
from .pki import CertificateAuthority, KeyPair, service_account_signing_key, write_kubeconfig

if TYPE_CHECKING:
    import kubernetes.client

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"  # first address of SERVICE_CIDR, the `kubernetes` service
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"


class ControlPlaneError(RuntimeError):
    """A peer would not start or stopped; the message names the log to read."""


class KubectlError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Cluster:
    """A reachable API server: admin credentials plus helpers to act as other identities."""

    server: str
    kubeconfig: Path
    log_dir: Path
    kubectl_path: Path
    work_dir: Path
    ca: CertificateAuthority | None = None
    _ca_pem: bytes = field(default=b"", repr=False)

    @property
    def kubectl_env(self) -> dict[str, str]:
        # Our own discovery cache, so the user's ~/.kube/cache neither helps nor hurts.
        return dict(os.environ, KUBECACHEDIR=str(self.work_dir / "kubectl-cache"))

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster (admin unless `kubeconfig` says otherwise)."""
        command = [str(self.kubectl_path), "--kubeconfig", str(kubeconfig or self.kubeconfig)]
        command += args
        done = subprocess.run(
            command,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.kubectl_env,
            check=False,
        )
        if check and done.returncode != 0:
            raise KubectlError(done.returncode, command, done.stdout, done.stderr)
        return done

    def api_client(self, kubeconfig: Path | None = None) -> kubernetes.client.ApiClient:
        """A fresh kubernetes-client ApiClient; the caller closes it (it is a context manager)."""
        import kubernetes.config

        return kubernetes.config.new_client_from_config(
            config_file=str(kubeconfig or self.kubeconfig)
        )

    def user_kubeconfig(self, user: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig authenticating as `user` in `groups` by a client certificate."""
        if self.ca is None:
            raise ControlPlaneError(
                "user_kubeconfig needs the test CA, which a cluster reused via "
                "QA_TEST_KUBECONFIG does not give us"
            )
        stem = _file_stem(user, *groups)
        pair = self.ca.issue(f"users/{stem}", user, organizations=groups)
        return write_kubeconfig(
            self.work_dir / "kubeconfigs" / f"user-{stem}.yaml",
            server=self.server,
            ca_pem=self._ca_pem,
            user=user,
            client=pair,
        )

    def service_account_kubeconfig(self, namespace: str, name: str) -> Path:
        """A kubeconfig with a TokenRequest token for the service account (created if absent)."""
        import kubernetes.client
        from kubernetes.client.exceptions import ApiException

        with self.api_client() as api:
            core = kubernetes.client.CoreV1Api(api)
            account = kubernetes.client.V1ServiceAccount(
                metadata=kubernetes.client.V1ObjectMeta(name=name)
            )
            try:
                core.create_namespaced_service_account(namespace, account)
            except ApiException as error:
                if error.status != 409:
                    raise
            # Empty audiences: the API server fills in its own, as for in-cluster tokens.
            request = kubernetes.client.AuthenticationV1TokenRequest(
                spec=kubernetes.client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
            )
            issued = core.create_namespaced_service_account_token(name, namespace, request)
        if issued.status is None or not issued.status.token:
            raise ControlPlaneError(f"TokenRequest for {namespace}/{name} returned no token")
        return write_kubeconfig(
            self.work_dir / "kubeconfigs" / f"sa-{_file_stem(namespace, name)}.yaml",
            server=self.server,
            ca_pem=self._ca_pem,
            user=f"system:serviceaccount:{namespace}:{name}",
            token=issued.status.token,
        )

    def apply_crds(self, paths: Iterable[Path]) -> None:
        """Server-side apply the CRD files and wait until each CRD is Established."""
        files = [str(p) for p in paths]
        if not files:
            return
        args = ["apply", "--server-side", "--force-conflicts", "-o", "name"]
        for f in files:
            args += ["-f", f]
        applied = self.kubectl(*args).stdout.split()
        crds = [n for n in applied if n.startswith("customresourcedefinition")]
        if crds:
            self.kubectl("wait", "--for=condition=Established", "--timeout=60s", *crds, timeout=90)


def _file_stem(*parts: str) -> str:
    joined = "-".join(parts) or "anonymous"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", joined)[:80] + "-" + secrets.token_hex(3)


def _dying_with_us(command: list[str]) -> list[str]:
    """Prefix `setpriv --pdeathsig KILL` where available (util-linux), so that a test process
    killed without cleanup leaves no etcd or kube-apiserver behind. Thread-safe, unlike a
    preexec_fn; elsewhere the command runs as is and the fixture's teardown must stop it."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *command] if setpriv else command


def _ready(server: str, context: ssl.SSLContext) -> bool:
    # /readyz is open to unauthenticated callers (system:public-info-viewer).
    try:
        with urllib.request.urlopen(f"{server}/readyz", context=context, timeout=2) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def local_control_plane(work_dir: Path, binaries: Binaries | None = None) -> Iterator[Cluster]:
    """Start etcd and kube-apiserver under `work_dir`; yield a Cluster; always stop both."""
    bins = binaries or locate()
    log_dir = work_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    pki_dir = work_dir / "pki"
    ca = CertificateAuthority(pki_dir)
    serving = ca.issue(
        "apiserver",
        "kube-apiserver",
        dns_names=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
        ip_addresses=["127.0.0.1", SERVICE_IP],
        server=True,
    )
    admin = ca.issue("admin", "qa-test-admin", organizations=["system:masters"])
    sa_key: KeyPair = service_account_signing_key(pki_dir)

    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    server = f"https://127.0.0.1:{api_port}"
    etcd_command = [
        str(bins.etcd),
        "--name=test",
        f"--data-dir={work_dir / 'etcd-data'}",
        f"--listen-client-urls={etcd_url}",
        f"--advertise-client-urls={etcd_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=test={peer_url}",
        "--unsafe-no-fsync",  # throwaway data: durability buys nothing, fsync costs seconds
        "--log-level=warn",
    ]
    apiserver_command = [
        str(bins.kube_apiserver),
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        # The `kubernetes` service endpoint may not be loopback; nothing in tests needs it.
        "--endpoint-reconciler-type=none",
        f"--secure-port={api_port}",
        f"--cert-dir={work_dir / 'apiserver-certs'}",
        f"--tls-cert-file={serving.cert}",
        f"--tls-private-key-file={serving.key}",
        f"--client-ca-file={ca.cert}",
        "--authorization-mode=RBAC",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--service-account-issuer={SA_ISSUER}",
        f"--service-account-key-file={sa_key.cert}",
        f"--service-account-signing-key-file={sa_key.key}",
        "--allow-privileged=true",
        "--profiling=false",
        "--v=1",
    ]
    etcd_log = log_dir / "etcd.log"
    apiserver_log = log_dir / "kube-apiserver.log"
    names, logs = ("etcd", "kube-apiserver"), (etcd_log, apiserver_log)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        # Both at once: the API server retries etcd until it answers, which saves a wait.
        for command, log in zip((etcd_command, apiserver_command), logs, strict=True):
            with log.open("ab") as sink:
                sink.write(("$ " + " ".join(command) + "\n").encode())
                sink.flush()
                processes.append(
                    subprocess.Popen(
                        _dying_with_us(command),
                        stdout=sink,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                    )
                )
        context = ssl.create_default_context(cafile=str(ca.cert))
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _ready(server, context):
            for name, process, log in zip(names, processes, logs, strict=False):
                if process.poll() is not None:
                    raise ControlPlaneError(
                        f"{name} exited with {process.returncode} during "
                        f"startup; log {log}:\n{log_tail(log)}"
                    )
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"kube-apiserver not ready at {server}/readyz after {STARTUP_TIMEOUT_S:.0f} s; "
                    f"logs in {log_dir}:\n{log_tail(apiserver_log)}"
                )
            time.sleep(0.1)
        kubeconfig = write_kubeconfig(
            work_dir / "kubeconfigs" / "admin.yaml",
            server=server,
            ca_pem=ca.cert_pem,
            user="qa-test-admin",
            client=admin,
        )
        yield Cluster(
            server=server,
            kubeconfig=kubeconfig,
            log_dir=log_dir,
            kubectl_path=bins.kubectl,
            work_dir=work_dir,
            ca=ca,
            _ca_pem=ca.cert_pem,
        )
    finally:
        for process in reversed(processes):  # API server first, then its storage
            stop(process, timeout=STOP_TIMEOUT_S)


def existing_cluster(kubeconfig: Path, work_dir: Path, kubectl_path: Path) -> Cluster:
    """A Cluster handle for a running cluster we did not start (QA_TEST_KUBECONFIG)."""
    config: dict[str, Any] = yaml.safe_load(kubeconfig.read_text())
    contexts = {c["name"]: c["context"] for c in config.get("contexts", [])}
    clusters = {c["name"]: c["cluster"] for c in config.get("clusters", [])}
    context = contexts[config["current-context"]]
    cluster = clusters[context["cluster"]]
    ca_pem = b""
    if "certificate-authority-data" in cluster:
        import base64

        ca_pem = base64.b64decode(cluster["certificate-authority-data"])
    elif "certificate-authority" in cluster:
        ca_pem = Path(cluster["certificate-authority"]).read_bytes()
    log_dir = work_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    return Cluster(
        server=cluster["server"],
        kubeconfig=kubeconfig,
        log_dir=log_dir,
        kubectl_path=kubectl_path,
        work_dir=work_dir,
        _ca_pem=ca_pem,
    )
