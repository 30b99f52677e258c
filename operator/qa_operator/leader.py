"""Leader election on a coordination.k8s.io Lease, so that of N replicas exactly one reconciles.

The semantics of client-go's leaderelection (what controller-runtime and ACK use): the holder
renews the Lease every `retry_s`; a candidate takes it over only once it has seen the same Lease
record unchanged for a whole `leaseDurationSeconds` by its own clock (no clock skew between pods
matters); writes are optimistic on resourceVersion, so of two candidates one wins. A holder that
cannot renew within `renew_deadline_s` (shorter than the lease) stops the process before anyone
else may take over, so two replicas never act at once. A graceful stop releases the Lease for an
immediate hand-over; a killed holder is replaced after one lease duration.

`qa-operator run` waits here before kopf starts; kopf itself runs --standalone (no peering).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from qa_operator.settings import OperatorSettings

logger = logging.getLogger(__name__)
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_NAMESPACE = "qa-operator"


@dataclass(frozen=True)
class Timing:
    lease_s: float  # how long a silent holder keeps the Lease
    renew_deadline_s: float  # the holder gives up (and exits) after this long without renewing
    retry_s: float  # how often the holder renews and a candidate tries

    @classmethod
    def for_lease(cls, lease_s: float) -> Timing:
        """client-go's defaults (15 s, 10 s, 2 s) scaled to the lease duration."""
        return cls(lease_s, lease_s * 2 / 3, max(0.2, lease_s * 2 / 15))


@dataclass(frozen=True)
class LeaseRecord:
    holder: str | None
    duration_s: float
    version: str  # resourceVersion: any write by anyone changes it


def may_take(record: LeaseRecord | None, me: str, unchanged_for_s: float) -> bool:
    """Whether `me` may write itself as the holder now (or create the Lease when None)."""
    if record is None or not record.holder or record.holder == me:
        return True
    return unchanged_for_s > record.duration_s  # no renewal seen for a whole lease: presumed dead


def identity(env: dict[str, str] | None = None) -> str:
    """The pod's name (POD_NAME from the downward API, else the host name) and a random suffix:
    a restarted container is a new candidate, never mistaken for the holder it replaced."""
    source = os.environ if env is None else env
    return f"{source.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def lease_namespace(configured: str | None) -> str:
    if configured:
        return configured
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    if SERVICE_ACCOUNT_NAMESPACE.is_file():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    return DEFAULT_NAMESPACE


class LeaseElector:
    def __init__(
        self,
        api: Any,  # kubernetes.client.CoordinationV1Api
        namespace: str,
        name: str,
        me: str,
        timing: Timing,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api, self.namespace, self.name, self.me = api, namespace, name, me
        self._timing, self._clock = timing, clock
        self._seen: tuple[str, float] | None = None  # (resourceVersion, when we first saw it)
        self._stop = threading.Event()

    def try_acquire_or_renew(self) -> bool:
        from kubernetes.client import V1Lease, V1LeaseSpec, V1ObjectMeta
        from kubernetes.client.exceptions import ApiException

        now = dt.datetime.now(dt.UTC)
        try:
            lease = self._api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            body = V1Lease(
                metadata=V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=V1LeaseSpec(
                    holder_identity=self.me,
                    lease_duration_seconds=max(1, round(self._timing.lease_s)),
                    acquire_time=now,
                    renew_time=now,
                    lease_transitions=0,
                ),
            )
            return self._write(lambda: self._api.create_namespaced_lease(self.namespace, body))
        spec = lease.spec or V1LeaseSpec()
        record = LeaseRecord(
            holder=spec.holder_identity,
            duration_s=float(spec.lease_duration_seconds or self._timing.lease_s),
            version=lease.metadata.resource_version,
        )
        if self._seen is None or self._seen[0] != record.version:
            self._seen = (record.version, self._clock())
        if not may_take(record, self.me, self._clock() - self._seen[1]):
            return False
        if record.holder != self.me:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
            logger.info("taking over lease %s/%s from %s", self.namespace, self.name, record.holder)
        spec.holder_identity = self.me
        spec.lease_duration_seconds = max(1, round(self._timing.lease_s))
        spec.renew_time = now
        lease.spec = spec
        # replace carries the resourceVersion we read: a concurrent writer makes it fail (409).
        return self._write(
            lambda: self._api.replace_namespaced_lease(self.name, self.namespace, lease)
        )

    def _write(self, call: Callable[[], Any]) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            written = call()
        except ApiException as error:
            if error.status == 409:
                return False  # another candidate wrote first
            raise
        self._seen = (written.metadata.resource_version, self._clock())
        return True

    def _attempt(self) -> bool:
        try:
            return self.try_acquire_or_renew()
        except Exception as error:  # the API server unreachable or refusing: try again
            logger.warning("lease %s/%s: %s", self.namespace, self.name, error)
            return False

    def acquire(self) -> None:
        """Block until this process holds the Lease."""
        logger.info("waiting to lead: lease %s/%s as %s", self.namespace, self.name, self.me)
        while not self._attempt():
            time.sleep(self._timing.retry_s)
        logger.info("leading: lease %s/%s held by %s", self.namespace, self.name, self.me)

    def keep(self, on_lost: Callable[[], None]) -> threading.Thread:
        """Renew in the background; call `on_lost` if no renewal succeeds within the deadline."""

        def renew() -> None:
            renewed = self._clock()
            while not self._stop.wait(self._timing.retry_s):
                if self._attempt():
                    renewed = self._clock()
                elif self._clock() - renewed > self._timing.renew_deadline_s:
                    logger.error("lost lease %s/%s: stopping", self.namespace, self.name)
                    on_lost()
                    return

        thread = threading.Thread(target=renew, name="lease-renewal", daemon=True)
        thread.start()
        return thread

    def release(self) -> None:
        """Stop renewing and hand the Lease over at once (holder cleared, as client-go does)."""
        self._stop.set()
        try:
            lease = self._api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec is not None and lease.spec.holder_identity == self.me:
                lease.spec.holder_identity = None
                lease.spec.lease_duration_seconds = 1
                self._api.replace_namespaced_lease(self.name, self.namespace, lease)
                logger.info("released lease %s/%s", self.namespace, self.name)
        except Exception as error:  # the next leader waits one lease duration instead
            logger.warning("could not release lease %s/%s: %s", self.namespace, self.name, error)


def coordination_api() -> Any:
    """A CoordinationV1Api: the pod's service account, else KUBECONFIG (as kopf logs in)."""
    import kubernetes.client
    import kubernetes.config

    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    return kubernetes.client.CoordinationV1Api()


def exit_now() -> None:
    """The Lease may already be someone else's: stop at once, as client-go's OnStoppedLeading."""
    logging.shutdown()
    os._exit(1)


@contextmanager
def standby_health(liveness_url: str | None) -> Iterator[None]:
    """While a replica waits to lead, kopf is not running: answer its liveness path ourselves,
    so that the kubelet does not restart a healthy standby."""
    if not liveness_url:
        yield
        return
    parts = urlsplit(liveness_url)
    path = parts.path or "/"

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path.split("?")[0] == path
            self.send_response(200 if ok else 404)
            self.end_headers()
            if ok:
                self.wfile.write(b'{"standby": true}')

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((parts.hostname or "0.0.0.0", parts.port or 80), Health)
    thread = threading.Thread(target=server.serve_forever, name="standby-health", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def wait_to_lead(settings: OperatorSettings, liveness_url: str | None) -> LeaseElector:
    """Block until this process leads (serving liveness and metrics meanwhile); then keep the
    Lease renewed in the background. The caller releases it when kopf has stopped."""
    # Set up before kopf configures logging, and apart from its root handler (no duplicates).
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(name)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    elector = LeaseElector(
        coordination_api(),
        lease_namespace(settings.lease_namespace),
        settings.lease_name,
        identity(),
        Timing.for_lease(settings.lease_seconds),
    )
    if settings.metrics_port:  # the standby is a scrape target too: it reports leading 0
        from qa_operator import metrics

        metrics.serve(settings.metrics_port)
    with standby_health(liveness_url):
        elector.acquire()
    elector.keep(on_lost=exit_now)
    return elector
