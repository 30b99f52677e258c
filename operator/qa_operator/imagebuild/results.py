"""What a build reports: the image by digest and, per layer, where it came from and its cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Origin = Literal["base", "cache", "built"]


@dataclass(frozen=True)
class LayerReport:
    name: str  # "base/0".., "torch", "dependencies", "app"
    digest: str
    diff_id: str
    size: int  # compressed
    bytes_uploaded: int  # 0 when the registry had it (or mounted it)
    origin: Origin  # copied from the base, found in the layer cache, or built now
    seconds: float  # building (or finding) it plus uploading it
    timings: dict[str, float] = field(default_factory=dict)  # pip, compile, pack, upload...

    @property
    def from_cache(self) -> bool:
        return self.origin == "cache"

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "digest": self.digest,
            "diff_id": self.diff_id,
            "size": self.size,
            "bytes_uploaded": self.bytes_uploaded,
            "origin": self.origin,
            "from_cache": self.from_cache,
            "seconds": round(self.seconds, 3),
            "timings": {step: round(seconds, 3) for step, seconds in self.timings.items()},
        }


@dataclass(frozen=True)
class BuildResult:
    uri: str  # "<host>/<repository>@sha256:...": what SageMaker's CreateModel takes
    digest: str  # the manifest's
    tag: str | None
    config_digest: str
    layers: tuple[LayerReport, ...]  # the base's first, in manifest order
    bytes_uploaded: int  # every byte sent: base blobs copied, layers, config, manifest
    seconds: float

    def as_json(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "digest": self.digest,
            "tag": self.tag,
            "config_digest": self.config_digest,
            "bytes_uploaded": self.bytes_uploaded,
            "seconds": round(self.seconds, 3),
            "layers": [layer.as_json() for layer in self.layers],
        }
