"""Where the local stack keeps what it builds or unpacks between runs."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(kind: str) -> Path:
    """$QA_OPERATOR_CACHE/<kind>, else ${XDG_CACHE_HOME:-~/.cache}/qa-operator/<kind>."""
    if root := os.environ.get("QA_OPERATOR_CACHE"):
        return Path(root) / kind
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "qa-operator" / kind
