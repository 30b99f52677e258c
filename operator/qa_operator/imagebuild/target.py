"""The interpreter and platform the image runs, as pip's cross-install options spell them.

Nothing here runs the target: wheels are chosen by tag (`pip install --target --platform ...`),
so the builder may run anywhere pip runs. Environment markers are the exception: pip evaluates
them on the building machine, so build on Linux x86_64 with the same Python minor version for
an exact result (build.py warns otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass

VENV = "opt/venv"  # in the image, without the leading "/"
PYTORCH_INDEX = "https://download.pytorch.org/whl"


@dataclass(frozen=True)
class TargetPython:
    """CPython `version` on glibc `glibc` or later, `machine` (Debian bookworm: 2.36)."""

    version: str = "3.11"
    glibc: tuple[int, int] = (2, 36)
    machine: str = "x86_64"

    @property
    def abi(self) -> str:
        return "cp" + self.version.replace(".", "")

    @property
    def site_packages(self) -> str:
        return f"{VENV}/lib/python{self.version}/site-packages"

    @property
    def interpreter_candidates(self) -> tuple[str, ...]:
        """Where base images keep this CPython: python:X.Y images first, then Debian's."""
        return (f"usr/local/bin/python{self.version}", f"usr/bin/python{self.version}")

    def platform_tags(self, *, generic_linux: bool = False) -> list[str]:
        """Every manylinux tag the target accepts, newest first.

        pip takes the tags literally: manylinux_2_28 does not imply manylinux_2_17, so each glibc
        version is listed, with the legacy aliases (manylinux2014 = 2.17, manylinux2010 = 2.12,
        manylinux1 = 2.5). `generic_linux` adds linux_<machine>, the tag of wheels built for no
        particular glibc (some indexes outside PyPI serve those).
        """
        major, newest = self.glibc
        tags = [f"manylinux_{major}_{minor}_{self.machine}" for minor in range(newest, 4, -1)]
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        tags += [f"{name}_{self.machine}" for glibc, name in legacy.items() if newest >= glibc]
        if generic_linux:
            tags.append(f"linux_{self.machine}")
        return tags

    def pip_arguments(self, *, generic_linux: bool = False) -> list[str]:
        arguments = [
            "--only-binary=:all:",
            "--python-version",
            self.version,
            "--implementation",
            "cp",
            "--abi",
            self.abi,
        ]
        for tag in self.platform_tags(generic_linux=generic_linux):
            arguments += ["--platform", tag]
        return arguments

    @property
    def identity(self) -> str:
        return f"cp{self.version}-glibc{self.glibc[0]}.{self.glibc[1]}-{self.machine}"


def torch_index_url(variant: str) -> str | None:
    """The package index of a torch build: "pypi" (None: the configured index, PyPI's CUDA
    build on Linux), "cpu", or an accelerator build of the PyTorch index ("cu128", "rocm6.4")."""
    if variant == "pypi":
        return None
    known = variant == "cpu" or variant.startswith(("cu", "rocm"))
    if not known or not variant.replace(".", "").isalnum():
        raise ValueError(
            f"torch variant {variant!r}: expected pypi, cpu, or a PyTorch index build such as "
            "cu128 or rocm6.4"
        )
    return f"{PYTORCH_INDEX}/{variant}"
