"""The one exception the image builder raises for its own failures (registry errors pass as is)."""

from __future__ import annotations


class ImageBuildError(Exception):
    """The image cannot be built as asked: no interpreter in the base, pip failed, a clash in
    /etc/passwd, a requirement pinned two ways... The message says which and what to change."""
