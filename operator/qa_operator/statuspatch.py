"""The status patch a pass sends: only what would change, so that a resync that finds nothing new
writes nothing (no PATCH request, no resourceVersion, no watch event for every watcher).

kopf sends the patch as a JSON merge patch (RFC 7386): a dict merges key by key, None removes a
key, anything else replaces the value. A key is in the patch when merging it would change the
status the resource has now.

A pass plans from the status its own earlier writes made, even when kopf's body is older than them
(OwnWrites).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any


def merged(current: Any, patch: Any) -> Any:
    """`patch` merged onto `current` as the API server merges a JSON merge patch."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(current) if isinstance(current, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merged(result.get(key), value)
    return result


def status_patch(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of `wanted` (a pass's status patch) that would change `current` (the status the
    resource has): empty when the pass found nothing new."""
    return {
        key: value
        for key, value in wanted.items()
        if merged(current, {key: value}).get(key) != current.get(key)
    }


def as_written(status: Mapping[str, Any], pending: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """`status` once the `pending` patches (oldest first) have landed on it."""
    result = dict(status)
    for patch in pending:
        result = merged(result, patch)
    return result


class OwnWrites:
    """The status patches this operator sent for each resource and has not yet seen in a body.

    kopf hands a pass the body it last saw. Two passes of one resource queued together (a resync
    and a change handler's retry) run one after the other, and the second one's body may predate
    the first one's status write: planned from it, the pass repeats what the first did (at 500
    resources some ran the superseded clean-up twice). A pass reads its resource's status through
    `seen`, which lays the unlanded patches over the body's. The patch a handler sends is still
    computed against the body's own status, so a write that never landed is sent again by any
    pass that produces the same keys."""

    MAX_PENDING = 8  # per resource; bodies this far behind mean the writes are not landing

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, list[dict[str, Any]]] = {}

    def seen(self, uid: str, status: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            pending = self._pending.get(uid)
            if not pending:
                return dict(status)
            written = as_written(status, pending)
            if written == dict(status):  # the body shows every write: nothing is pending
                del self._pending[uid]
            return written

    def wrote(self, uid: str, patch: Mapping[str, Any]) -> None:
        if not patch:
            return
        with self._lock:
            pending = self._pending.setdefault(uid, [])
            pending.append(dict(patch))
            del pending[: -self.MAX_PENDING]

    def forget(self, uid: str) -> None:
        with self._lock:
            self._pending.pop(uid, None)
