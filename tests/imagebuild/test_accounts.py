"""/etc/passwd and /etc/group: the base's lines plus the image's user, as useradd writes them."""

from __future__ import annotations

import pytest

from qa_operator.imagebuild.accounts import with_account
from qa_operator.imagebuild.errors import ImageBuildError
from qa_operator.imagebuild.recipes import SERVING, Account

DEBIAN_PASSWD = (
    b"root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
DEBIAN_GROUP = b"root:x:0:\nnogroup:x:65534:\n"


def test_the_user_is_appended_to_the_bases_files() -> None:
    passwd, group = with_account(DEBIAN_PASSWD, DEBIAN_GROUP, SERVING.account)
    assert passwd == DEBIAN_PASSWD + b"serving:x:10001:10001::/home/serving:/bin/sh\n"
    assert group == DEBIAN_GROUP + b"serving:x:10001:\n"


@pytest.mark.parametrize(
    ("passwd", "expected"),
    [
        (None, b"serving:x:10001:10001::/home/serving:/bin/sh\n"),
        (b"", b"serving:x:10001:10001::/home/serving:/bin/sh\n"),
        (
            b"root:x:0:0::/root:/bin/sh",
            b"root:x:0:0::/root:/bin/sh\nserving:x:10001:10001::/home/serving:/bin/sh\n",
        ),
        (  # already there, identical (a base built by this recipe): not twice
            b"root:x:0:0::/root:/bin/sh\nserving:x:10001:10001::/home/serving:/bin/sh\n",
            b"root:x:0:0::/root:/bin/sh\nserving:x:10001:10001::/home/serving:/bin/sh\n",
        ),
    ],
)
def test_missing_and_partial_files(passwd: bytes | None, expected: bytes) -> None:
    assert with_account(passwd, None, SERVING.account)[0] == expected


@pytest.mark.parametrize(
    ("passwd", "group"),
    [
        (b"serving:x:999:999::/srv:/bin/sh\n", b""),  # the name, another uid
        (b"app:x:10001:10001::/app:/bin/sh\n", b""),  # the uid, another name
        (b"", b"app:x:10001:\n"),  # the gid, another group
    ],
)
def test_clashes_are_errors_not_silent_duplicates(passwd: bytes, group: bytes) -> None:
    with pytest.raises(ImageBuildError, match="clashes"):
        with_account(passwd, group, SERVING.account)


def test_user_group_means_same_name_and_number() -> None:
    account = Account(name="operator", uid=10001, home="/home/operator")
    assert account.gid == 10001
    assert with_account(None, None, account) == (
        b"operator:x:10001:10001::/home/operator:/bin/sh\n",
        b"operator:x:10001:\n",
    )
