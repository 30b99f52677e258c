"""Pure: how a pass observes its endpoint when one shared ListEndpoints snapshot per region is at
hand, and which listed names are this endpoint's own.

A resync of a settled resource reads its endpoint's entry in the snapshot (one paged
ListEndpoints per region per poll, shared by every resource) and reuses what the last
DescribeEndpoint said while the entry shows no change (the same status and LastModifiedTime);
SageMaker moves LastModifiedTime with every status change, update and delete. A pass that
changes something, or waits on SageMaker, always describes.

How soon a change made behind the operator's back shows is `ResyncTiming.detection_lag`: one
resync interval (QA_OPERATOR_RESYNC_SECONDS).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable
from dataclasses import dataclass

from qa_operator.plan import TRANSITIONAL


@dataclass(frozen=True)
class EndpointSummary:
    """What ListEndpoints says of one endpoint, and what a DescribeEndpoint saw of it."""

    status: str
    last_modified: dt.datetime
    created: dt.datetime


# The share of the resync interval a shared ListEndpoints snapshot may be old when a resync reads
# it: one ListEndpoints per region per tenth of the interval, whatever the number of resources.
SNAPSHOT_SHARE = 0.1


@dataclass(frozen=True)
class ResyncTiming:
    """When a resource's resyncs start and how old the snapshot they read may be.

    A change at time t shows in the first snapshot begun after t. Resyncs start every `interval`
    on a fixed grid (kopf's sharp timer: a slow pass does not push the next one back), and each
    reads a snapshot begun at most `snapshot_max_age` before it starts. The first resync that
    starts more than `snapshot_max_age` after t therefore sees the change: at most
    `interval + snapshot_max_age` after it. While the workers keep up, that is: a resync that
    waits for a worker (qa_operator_reconcile_queue_depth) starts late by that wait."""

    interval: float
    snapshot_max_age: float

    @property
    def detection_lag(self) -> float:
        return self.interval + self.snapshot_max_age


def resync_timing(resync_seconds: float) -> ResyncTiming:
    """The timing that detects an out-of-band change within `resync_seconds`: the snapshot's
    age comes out of the interval rather than on top of it."""
    max_age = resync_seconds * SNAPSHOT_SHARE
    return ResyncTiming(interval=resync_seconds - max_age, snapshot_max_age=max_age)


class Look(enum.Enum):
    DESCRIBE = "Describe"  # DescribeEndpoint: something may have changed, or nothing is known
    REUSE = "Reuse"  # the last DescribeEndpoint still holds
    ABSENT = "Absent"  # the endpoint does not exist


def how_to_observe(
    listed: EndpointSummary | None,
    described: EndpointSummary | None,
    *,
    changing: bool,
    listed_after_write: bool,
) -> Look:
    """`listed`: the endpoint's entry in the snapshot (None: not listed); `described`: what the
    last DescribeEndpoint of it said (None: never described in this process); `changing`: the
    pass acts or waits on SageMaker; `listed_after_write`: the snapshot began after this
    operator's last create, update or delete of the endpoint (a snapshot older than a write
    cannot tell what the write did)."""
    if changing or not listed_after_write:
        return Look.DESCRIBE
    if listed is None:
        return Look.ABSENT
    if listed.status in TRANSITIONAL or described is None or listed != described:
        return Look.DESCRIBE
    return Look.REUSE


def own_content_names(stem: str, names: Iterable[str], hash_length: int) -> list[str]:
    """The names among `names` that are `<stem>-<hash>`: NameContains matches substrings, so
    listing `default-qa-1` also returns `default-qa-10-...` and `default-qa-1-x-...`."""
    prefix = f"{stem}-"
    return [
        name
        for name in names
        if name.startswith(prefix)
        and len(name) == len(prefix) + hash_length
        and "-" not in name[len(prefix) :]
    ]
