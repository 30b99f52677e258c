"""The target's pip options: every manylinux tag spelled out, and the torch index by variant."""

from __future__ import annotations

import pytest

from qa_operator.imagebuild.target import TargetPython, torch_index_url


def test_every_glibc_version_is_listed_newest_first_with_the_legacy_aliases() -> None:
    tags = TargetPython(glibc=(2, 36)).platform_tags()
    assert tags[0] == "manylinux_2_36_x86_64"
    manylinux_2 = [tag for tag in tags if tag.startswith("manylinux_2_")]
    assert manylinux_2 == [f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)]
    assert tags[-3:] == ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    assert "linux_x86_64" not in tags


@pytest.mark.parametrize(
    ("glibc", "legacy"),
    [
        ((2, 17), ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]),
        ((2, 16), ["manylinux2010_x86_64", "manylinux1_x86_64"]),
        ((2, 5), ["manylinux1_x86_64"]),
    ],
)
def test_legacy_aliases_only_up_to_the_targets_glibc(
    glibc: tuple[int, int], legacy: list[str]
) -> None:
    tags = TargetPython(glibc=glibc).platform_tags()
    assert [tag for tag in tags if not tag.startswith("manylinux_")] == legacy


def test_generic_linux_tag_on_request() -> None:
    assert TargetPython().platform_tags(generic_linux=True)[-1] == "linux_x86_64"


def test_pip_arguments_name_the_target_interpreter() -> None:
    arguments = TargetPython(version="3.11").pip_arguments()
    assert arguments[:7] == [
        "--only-binary=:all:",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--abi",
        "cp311",
    ]
    platforms = arguments[8::2]
    assert arguments[7::2] == ["--platform"] * len(platforms)
    assert platforms == TargetPython().platform_tags()


def test_paths_follow_the_version() -> None:
    target = TargetPython(version="3.12")
    assert target.site_packages == "opt/venv/lib/python3.12/site-packages"
    assert target.interpreter_candidates == ("usr/local/bin/python3.12", "usr/bin/python3.12")
    assert target.identity == "cp3.12-glibc2.36-x86_64"


@pytest.mark.parametrize(
    ("variant", "url"),
    [
        ("pypi", None),
        ("cpu", "https://download.pytorch.org/whl/cpu"),
        ("cu128", "https://download.pytorch.org/whl/cu128"),
        ("rocm6.4", "https://download.pytorch.org/whl/rocm6.4"),
    ],
)
def test_torch_variants(variant: str, url: str | None) -> None:
    assert torch_index_url(variant) == url


@pytest.mark.parametrize("variant", ["", "gpu", "cu128/../x", "cpu?x=1", "https://evil"])
def test_unknown_torch_variants_are_refused(variant: str) -> None:
    with pytest.raises(ValueError, match="torch variant"):
        torch_index_url(variant)
