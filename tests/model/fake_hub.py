"""A minimal HuggingFace hub on loopback: the file API `snapshot_download` uses (revision info,
tree listing, resolve), serving one model directory, recording every request it gets.

Its branch points to `commit`: a test moves the branch by changing the directory's files and
`commit`. Revision info honours `expand` (only the fields asked, as the hub answers
`model_info(..., expand=["sha"])`) and answers an unknown revision 404 `RevisionNotFound`."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class FakeHub:
    repo_id: str
    model_dir: Path
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    branch: str = "main"
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    url: str = ""

    def files(self) -> dict[str, bytes]:
        return {
            p.relative_to(self.model_dir).as_posix(): p.read_bytes()
            for p in sorted(self.model_dir.rglob("*"))
            if p.is_file()
        }

    def file_requests(self, name: str) -> list[str]:
        """The methods (GET, HEAD) of the requests for the file `name`, at any revision, in
        order: what a client fetched, or checked, of it."""
        prefix = f"/{self.repo_id}/resolve/"
        return [
            method
            for method, path, _ in list(self.requests)
            if path.startswith(prefix) and path[len(prefix) :].partition("/")[2] == name
        ]

    def revision_requests(self) -> list[str]:
        """The revisions asked about through revision info (`model_info`), in order."""
        prefix = f"/api/models/{self.repo_id}/revision/"
        paths = [path for _, path, _ in list(self.requests)]
        return [path[len(prefix) :] for path in paths if path.startswith(prefix)]


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, value: object) -> None:
            self._reply(200, json.dumps(value).encode(), {"Content-Type": "application/json"})

        def _serve(self) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.requests.append((self.command, path, self.headers.get("Authorization")))
            files = hub.files()
            api = f"/api/models/{hub.repo_id}"
            if path in (f"{api}/revision/{hub.branch}", f"{api}/revision/{hub.commit}"):
                siblings = [{"rfilename": name} for name in files]
                info = {"id": hub.repo_id, "sha": hub.commit, "siblings": siblings}
                expand = parse_qs(urlsplit(self.path).query).get("expand")
                if expand:
                    info = {k: v for k, v in info.items() if k == "id" or k in expand}
                return self._json(info)
            if path.startswith(f"{api}/revision/"):
                return self._reply(
                    404, b'{"error": "Invalid rev id"}', {"X-Error-Code": "RevisionNotFound"}
                )
            if path == f"{api}/tree/{hub.commit}":
                return self._json(
                    [
                        {
                            "type": "file",
                            "path": name,
                            "size": len(data),
                            "oid": hashlib.sha1(data).hexdigest(),
                        }
                        for name, data in files.items()
                    ]
                )
            prefix = f"/{hub.repo_id}/resolve/"
            if path.startswith(prefix):
                revision, _, name = path[len(prefix) :].partition("/")
                if revision in (hub.branch, hub.commit) and name in files:
                    data = files[name]
                    headers = {
                        "X-Repo-Commit": hub.commit,
                        "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
                        "Content-Type": "application/octet-stream",
                    }
                    return self._reply(200, data, headers)
            return self._reply(404, b'{"error": "not found"}', {"X-Error-Code": "EntryNotFound"})

        do_GET = _serve
        do_HEAD = _serve

    return Handler


@contextmanager
def fake_hub(repo_id: str, model_dir: Path) -> Iterator[FakeHub]:
    hub = FakeHub(repo_id=repo_id, model_dir=model_dir)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
