"""The knobs tests turn: endpoint lifecycle timing, requested failures, injected faults, and the
container runtime (runtime.py) when endpoints should run their containers.

Pure state with a lock (the server is threaded); nothing here imports moto.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .runtime import EndpointRuntime

FaultKind = Literal["throttle", "5xx", "latency"]


@dataclass(frozen=True)
class Phase:
    """How long an endpoint stays in one transitional status.

    The status is left once at least `describes` DescribeEndpoint calls have seen it AND at least
    `seconds` have passed since it was entered; both 0 means the status is never observed.
    """

    describes: int = 0
    seconds: float = 0.0

    @property
    def instant(self) -> bool:
        return self.describes <= 0 and self.seconds <= 0


@dataclass(frozen=True)
class Lifecycle:
    creating: Phase = Phase()
    updating: Phase = Phase()
    deleting: Phase = Phase()


@dataclass
class Fault:
    """One injected fault for (service, operation); operation "*" matches every operation.

    `rate` is applied deterministically (error diffusion, not a random draw): with rate 0.25
    exactly every fourth matching request is hit, so tests stay reproducible. `count` caps the
    number of hits; once spent, the fault is dropped.
    """

    service: str
    operation: str
    kind: FaultKind
    rate: float = 1.0
    count: int | None = None
    latency_s: float = 0.0
    http_status: int = 500
    hits: int = 0
    _credit: float = field(default=0.0, repr=False)

    def matches(self, service: str, operation: str) -> bool:
        return self.service == service and self.operation in ("*", operation)

    def take(self) -> bool:
        """Count one matching request; True when this one is hit."""
        if self.count is not None and self.hits >= self.count:
            return False
        self._credit += self.rate
        if self._credit >= 1.0 - 1e-9:
            self._credit -= 1.0
            self.hits += 1
            return True
        return False

    @property
    def spent(self) -> bool:
        return self.count is not None and self.hits >= self.count


class Controls:
    """Process-wide settings read by the SageMaker patches and the fault middleware."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.lifecycle = Lifecycle()
        self.failed_creations: dict[str, str] = {}
        self.failed_updates: dict[str, str] = {}
        self.faults: list[Fault] = []
        self.calls: Counter[tuple[str, str]] = Counter()
        # (service, operation, who made it: callers.Caller) -> requests; the CloudTrail stand-in
        self.callers: Counter[tuple[str, str, Any]] = Counter()
        self.runtime: EndpointRuntime | None = None
        # ListServiceQuotas (servicequotas.py): service code -> quota name -> applied value.
        self.service_quotas: dict[str, dict[str, float]] = {}

    def reset(self) -> None:
        """Everything back to defaults; the runtime, if any, stops its containers and is removed."""
        with self.lock:
            self.lifecycle = Lifecycle()
            self.calls.clear()
            self.callers.clear()
            self.failed_creations.clear()
            self.failed_updates.clear()
            self.faults.clear()
            self.service_quotas.clear()
        self.set_runtime(None)

    def set_runtime(self, runtime: EndpointRuntime | None) -> None:
        """Install `runtime` (None: none, endpoints run no container); the one it replaces stops
        its containers, outside the lock (stopping waits for processes)."""
        with self.lock:
            previous, self.runtime = self.runtime, runtime
        if previous is not None and previous is not runtime:
            previous.stop_all()

    def record_caller(self, service: str, operation: str, caller: Any) -> None:
        with self.lock:
            self.callers[(service, operation, caller)] += 1

    def take_creation_failure(self, endpoint_name: str) -> str | None:
        with self.lock:
            return self.failed_creations.pop(endpoint_name, None)

    def take_update_failure(self, endpoint_name: str) -> str | None:
        with self.lock:
            return self.failed_updates.pop(endpoint_name, None)

    def add_fault(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def fault_for(self, service: str, operation: str) -> Fault | None:
        """The first fault that hits this request, if any (and count it)."""
        with self.lock:
            self.calls[(service, operation)] += 1
            for fault in list(self.faults):
                if fault.matches(service, operation) and fault.take():
                    if fault.spent:
                        self.faults.remove(fault)
                    return fault
            return None


CONTROLS = Controls()
