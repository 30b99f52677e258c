"""The shared, short-lived view of SageMaker endpoints that resyncs read instead of describing
each endpoint: one paged ListEndpoints per region per `max_age` seconds, the last DescribeEndpoint
of each endpoint, and each endpoint's tags by ARN (dropped when this operator writes them).

Thread-safe: kopf runs handlers in worker threads. Bounded: the oldest entries go first.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from qa_operator.aws.errors import aws_call
from qa_operator.observation import EndpointSummary
from qa_operator.plan import ObservedEndpoint

K = TypeVar("K")
V = TypeVar("V")
MAX_ENTRIES = 20_000
LIST_PAGE = 100  # ListEndpoints' MaxResults limit


class BoundedCache(Generic[K, V]):
    """A dict that forgets its least recently used entries beyond `max_entries`."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def pop(self, key: K) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class Snapshot:
    started: float  # the clock when the first page was asked for
    endpoints: Mapping[str, EndpointSummary]


@dataclass(frozen=True)
class Described:
    summary: EndpointSummary
    endpoint: ObservedEndpoint


class RegionObservations:
    """One region's snapshot, descriptions, tags and write times."""

    def __init__(self, max_age: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self._clock = clock
        self._listing = threading.Lock()  # one ListEndpoints at a time; the others wait for it
        self._snapshot: Snapshot | None = None
        self.described: BoundedCache[str, Described] = BoundedCache()
        # ARN -> (the endpoint's CreationTime, its tags)
        self.tags: BoundedCache[str, tuple[Any, dict[str, str]]] = BoundedCache()
        self._written: BoundedCache[str, float] = BoundedCache()

    def snapshot(self, client: Any) -> Snapshot:
        with self._listing:
            current = self._snapshot
            if current is None or self._clock() - current.started > self.max_age:
                started = self._clock()
                current = Snapshot(started, list_endpoints(client))
                self._snapshot = current
            return current

    def wrote(self, endpoint_name: str) -> None:
        """This operator created, updated or deleted the endpoint just now."""
        self._written.put(endpoint_name, self._clock())
        self.described.pop(endpoint_name)

    def listed_after_write(self, snapshot: Snapshot, endpoint_name: str) -> bool:
        written = self._written.get(endpoint_name)
        return written is None or snapshot.started > written


class Observations:
    """Every (region, AWS role) pair's RegionObservations, made on first use: two roles may see
    different endpoints (None: the operator's own identity)."""

    def __init__(self, max_age: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_age = max_age
        self._clock = clock
        self._regions: dict[tuple[str, str | None], RegionObservations] = {}
        self._lock = threading.Lock()

    def region(self, name: str, role_arn: str | None = None) -> RegionObservations:
        key = (name, role_arn)
        with self._lock:
            found = self._regions.get(key)
            if found is None:
                found = self._regions[key] = RegionObservations(self._max_age, self._clock)
            return found


def list_endpoints(client: Any) -> dict[str, EndpointSummary]:
    found: dict[str, EndpointSummary] = {}
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"MaxResults": LIST_PAGE}
        if token:
            kwargs["NextToken"] = token
        page = aws_call("ListEndpoints", lambda kw=kwargs: client.list_endpoints(**kw))  # type: ignore[misc]
        for item in page.get("Endpoints", []):
            found[item["EndpointName"]] = EndpointSummary(
                status=item["EndpointStatus"],
                last_modified=item["LastModifiedTime"],
                created=item["CreationTime"],
            )
        token = page.get("NextToken")
        if not token:
            return found
