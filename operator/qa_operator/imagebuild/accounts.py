"""/etc/passwd and /etc/group with the container's user added, as `useradd --user-group` would
write them, so that getpass/pwd lookups (and tools that need a home) work for uid 10001."""

from __future__ import annotations

from qa_operator.imagebuild.errors import ImageBuildError
from qa_operator.imagebuild.recipes import Account


def passwd_line(account: Account) -> str:
    return f"{account.name}:x:{account.uid}:{account.gid}::{account.home}:{account.shell}"


def group_line(account: Account) -> str:
    return f"{account.name}:x:{account.gid}:"


def _with_line(base: bytes | None, line: str, *, file: str, number_field: int) -> bytes:
    text = (base or b"").decode()
    wanted_name, _, wanted_number = (line.split(":")[i] for i in (0, 1, number_field))
    for existing in text.splitlines():
        fields = existing.split(":")
        if existing == line:
            return text.encode() if text.endswith("\n") else (text + "\n").encode()
        if fields[0] == wanted_name or (
            len(fields) > number_field and fields[number_field] == wanted_number
        ):
            raise ImageBuildError(
                f"the base image's {file} already has {existing!r}, which clashes with the "
                f"image's user {line!r}; use a base without it"
            )
    if text and not text.endswith("\n"):
        text += "\n"
    return (text + line + "\n").encode()


def with_account(
    passwd: bytes | None, group: bytes | None, account: Account
) -> tuple[bytes, bytes]:
    """(passwd, group) contents: the base's (None: it has none) plus the account's lines."""
    return (
        _with_line(passwd, passwd_line(account), file="/etc/passwd", number_field=2),
        _with_line(group, group_line(account), file="/etc/group", number_field=2),
    )
