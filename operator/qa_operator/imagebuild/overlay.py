"""A few files of an image, followed through its layers as a container runtime stacks them.

The builder needs three facts about the base: where its CPython is, and its /etc/passwd and
/etc/group. They are read from the layers themselves, applying whiteouts (".wh.NAME" deletes
NAME, ".wh..wh..opq" hides everything the layers below had in that directory).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"

EntryKind = Literal["file", "dir", "symlink", "hardlink", "other"]


@dataclass(frozen=True)
class LayerEntry:
    name: str  # as the tar names it; normalised by `normalise`
    kind: EntryKind
    content: bytes | None = None  # regular files that were asked for only


def normalise(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


def _under(path: str, directory: str) -> bool:
    return directory in ("", path) or path.startswith(directory + "/")


class Overlay:
    """The state of the `wanted` paths after the layers applied so far (lowest first)."""

    def __init__(self, wanted: Iterable[str]) -> None:
        self.wanted = frozenset(normalise(path) for path in wanted)
        self._found: dict[str, LayerEntry] = {}

    def wants(self, name: str) -> bool:
        return normalise(name) in self.wanted

    def apply(self, layer: Iterable[LayerEntry]) -> None:
        hidden: list[str] = []  # whited-out paths and opaque directories' contents
        added: dict[str, LayerEntry] = {}
        for entry in layer:
            name = normalise(entry.name)
            directory, base = posixpath.split(name)
            if base == OPAQUE_MARKER:
                hidden.append(directory)
            elif base.startswith(WHITEOUT_PREFIX):
                hidden.append(posixpath.join(directory, base.removeprefix(WHITEOUT_PREFIX)))
            else:
                if entry.kind != "dir":
                    hidden.append(name)  # a file replacing a directory hides what it held
                if name in self.wanted:
                    added[name] = LayerEntry(name, entry.kind, entry.content)
        for path in list(self._found):
            if any(_under(path, gone) for gone in hidden):
                del self._found[path]
        self._found.update(added)

    def get(self, path: str) -> LayerEntry | None:
        return self._found.get(normalise(path))

    def first_present(self, paths: Iterable[str]) -> str | None:
        for path in paths:
            if self.get(path) is not None:
                return "/" + normalise(path)
        return None

    def content(self, path: str) -> bytes | None:
        entry = self.get(path)
        return entry.content if entry is not None and entry.kind == "file" else None
