"""The status patch a pass sends: only what would change, so that a resync that finds nothing new
writes nothing (no PATCH request, no resourceVersion, no watch event for every watcher).

kopf sends the patch as a JSON merge patch (RFC 7386): a dict merges key by key, None removes a
key, anything else replaces the value. A key is in the patch when merging it would change the
status the resource has now.
"""

from __future__ import annotations

from collections.abc import Mapping
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
