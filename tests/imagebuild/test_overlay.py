"""Reading the base's facts through its layers, whiteouts applied as a container runtime would."""

from __future__ import annotations

import pytest

from qa_operator.imagebuild.overlay import LayerEntry, Overlay, normalise

WANTED = ("etc/passwd", "usr/local/bin/python3.11", "usr/bin/python3.11")


def _file(name: str, content: bytes = b"x") -> LayerEntry:
    return LayerEntry(name, "file", content)


def _overlay(*layers: list[LayerEntry]) -> Overlay:
    overlay = Overlay(WANTED)
    for layer in layers:
        overlay.apply(layer)
    return overlay


@pytest.mark.parametrize(
    ("name", "normalised"),
    [
        ("./etc/passwd", "etc/passwd"),
        ("/etc/passwd", "etc/passwd"),
        ("etc/", "etc"),
        (".", ""),
        ("etc/.wh.passwd", "etc/.wh.passwd"),
        ("usr//bin/../bin/python3.11", "usr/bin/python3.11"),
    ],
)
def test_normalise(name: str, normalised: str) -> None:
    assert normalise(name) == normalised


def test_the_last_layer_writing_a_file_wins() -> None:
    overlay = _overlay([_file("./etc/passwd", b"one")], [_file("etc/passwd", b"two")])
    assert overlay.content("etc/passwd") == b"two"


def test_a_whiteout_deletes_the_file_below() -> None:
    overlay = _overlay([_file("etc/passwd")], [LayerEntry("etc/.wh.passwd", "file")])
    assert overlay.content("etc/passwd") is None


def test_a_whiteout_of_a_directory_deletes_what_it_held() -> None:
    overlay = _overlay([_file("usr/local/bin/python3.11")], [LayerEntry("usr/.wh.local", "file")])
    assert overlay.first_present(WANTED[1:]) is None


def test_an_opaque_directory_hides_the_layers_below_but_not_its_own() -> None:
    overlay = _overlay(
        [_file("etc/passwd", b"old"), _file("usr/bin/python3.11")],
        [_file("etc/passwd", b"new"), LayerEntry("etc/.wh..wh..opq", "file")],
    )
    assert overlay.content("etc/passwd") == b"new"
    hidden = _overlay([_file("etc/passwd", b"old")], [LayerEntry("etc/.wh..wh..opq", "file")])
    assert hidden.content("etc/passwd") is None


def test_a_file_replacing_a_directory_hides_its_contents() -> None:
    overlay = _overlay([_file("usr/local/bin/python3.11")], [LayerEntry("usr/local", "symlink")])
    assert overlay.get("usr/local/bin/python3.11") is None


@pytest.mark.parametrize(
    ("layers", "python"),
    [
        (
            [[_file("usr/local/bin/python3.11"), _file("usr/bin/python3.11")]],
            "/usr/local/bin/python3.11",
        ),
        ([[_file("usr/bin/python3.11")]], "/usr/bin/python3.11"),
        ([[LayerEntry("usr/bin/python3.11", "symlink")]], "/usr/bin/python3.11"),
        ([[_file("usr/bin/python3.12")]], None),
        ([], None),
    ],
)
def test_the_interpreter_python_images_first_then_debians(
    layers: list[list[LayerEntry]], python: str | None
) -> None:
    assert _overlay(*layers).first_present(WANTED[1:]) == python


def test_only_wanted_paths_are_kept() -> None:
    overlay = _overlay([_file("etc/shadow"), _file("etc/passwd")])
    assert overlay.get("etc/shadow") is None
    assert overlay.wants("./etc/passwd") and not overlay.wants("etc/shadow")


def test_a_symlinked_passwd_has_no_content() -> None:
    overlay = _overlay([LayerEntry("etc/passwd", "symlink")])
    assert overlay.get("etc/passwd") is not None
    assert overlay.content("etc/passwd") is None
