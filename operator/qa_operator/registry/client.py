"""A small client for the OCI distribution API (registry /v2), speaking to it over plain HTTP.

It covers what an image push needs and nothing more: auth (Basic, and the Bearer token flow used
by Docker Hub, ECR and `docker-registry` with token auth), blob existence checks, download,
upload (monolithic or chunked), cross-repository mounts, and manifest get/put. Every failure is
raised as one of four classified exceptions, so that callers decide "retry later" or "give up"
from the type alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urljoin, urlsplit

import requests

from qa_operator import metrics

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_MEDIA_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)
INDEX_MEDIA_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)

# Above this size a blob is sent in PATCH chunks instead of a single PUT.
DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024
_READ_SIZE = 1024 * 1024


class RegistryError(Exception):
    """A registry call failed for a reason none of the subclasses names (5xx, bad answer...)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RegistryUnauthorized(RegistryError):
    """The registry refused our credentials (401/403 after authenticating)."""


class RegistryNotFound(RegistryError):
    """The repository, blob or manifest does not exist."""


class RegistryUnreachable(RegistryError):
    """No HTTP answer: connection refused, DNS failure, TLS failure, timeout, dropped connection."""


class DigestMismatch(RegistryError):
    """Downloaded content does not hash to the digest it was asked for."""


@dataclass(frozen=True)
class Manifest:
    """A manifest as the registry stores it: the exact bytes matter, they define the digest."""

    media_type: str
    body: bytes
    digest: str

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(rest))


def _error_text(response: requests.Response) -> str:
    """The registry's own error codes and messages, when it sent the standard JSON body."""
    try:
        errors = response.json().get("errors") or []
        parts = [f"{e.get('code', '?')}: {e.get('message', '')}".strip() for e in errors]
        if parts:
            return "; ".join(parts)
    except (ValueError, AttributeError):
        pass
    return response.text[:200].strip() or response.reason or ""


class RegistryClient:
    """One registry endpoint, with optional credentials. Thread-safe enough for sequential use.

    `base_url` is "https://host[:port]" or "http://127.0.0.1:PORT". `image_host` is the host
    written into image URIs; it defaults to the endpoint's host[:port], and differs only when the
    registry is reached through another address than the one the image consumer uses.
    `bytes_uploaded` counts every request body byte sent (blobs and manifests): a push that found
    everything in place leaves it unchanged.
    """

    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        image_host: str | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        timeout: float = 60.0,
        session: requests.Session | None = None,
    ) -> None:
        if "://" not in base_url:
            base_url = "https://" + base_url
        parts = urlsplit(base_url)
        self.base_url = f"{parts.scheme}://{parts.netloc}"
        self.host = image_host or parts.netloc
        self.username = username
        self.password = password
        self.chunk_size = chunk_size
        self.timeout = timeout
        self.bytes_uploaded = 0
        self._session = session or requests.Session()
        self._tokens: dict[str, str] = {}  # scope -> bearer token
        self._basic = False  # the registry asked for Basic auth once: send it up front after that

    def __repr__(self) -> str:
        return f"RegistryClient({self.base_url!r}, host={self.host!r})"

    def close(self) -> None:
        self._session.close()

    # -- transport and auth ---------------------------------------------------------------------

    def _auth_headers(self, scope: str) -> dict[str, str]:
        token = self._tokens.get(scope)
        if token:
            return {"Authorization": f"Bearer {token}"}
        return {}

    def _authenticate(self, challenge: str, scope: str) -> bool:
        """Answer a 401 challenge; True when retrying the request can help."""
        scheme, params = _parse_challenge(challenge)
        if scheme == "basic":
            if self.username is None or self._basic:
                return False
            self._basic = True
            return True
        if scheme != "bearer" or "realm" not in params:
            return False
        query = {"service": params.get("service", "")}
        query["scope"] = params.get("scope", scope)
        auth = (self.username, self.password or "") if self.username is not None else None
        try:
            reply = self._session.get(
                params["realm"], params=query, auth=auth, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise RegistryUnreachable(f"token service {params['realm']}: {exc}") from exc
        if reply.status_code in (401, 403):
            raise RegistryUnauthorized(
                f"token service {params['realm']} refused the credentials: {_error_text(reply)}",
                status=reply.status_code,
            )
        if not reply.ok:
            raise RegistryError(
                f"token service {params['realm']}: HTTP {reply.status_code} {_error_text(reply)}",
                status=reply.status_code,
            )
        body = reply.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError(f"token service {params['realm']} returned no token")
        self._tokens[scope] = token
        return True

    def _request(
        self,
        method: str,
        path_or_url: str,
        *,
        scope: str,
        ok: tuple[int, ...],
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
        stream: bool = False,
        what: str = "",
    ) -> requests.Response:
        url = (
            urljoin(self.base_url + "/", path_or_url.lstrip("/"))
            if "://" not in path_or_url
            else path_or_url
        )
        for attempt in range(2):
            all_headers = {**(headers or {}), **self._auth_headers(scope)}
            auth = (self.username, self.password or "") if self._basic and self.username else None
            try:
                response = self._session.request(
                    method,
                    url,
                    headers=all_headers,
                    data=data,
                    auth=auth,
                    stream=stream,
                    timeout=self.timeout,
                    allow_redirects=True,
                )
            except requests.RequestException as exc:
                raise RegistryUnreachable(f"{method} {url}: {exc}") from exc
            if data is not None:
                self.bytes_uploaded += len(data)
            if response.status_code == 401 and attempt == 0:
                challenge = response.headers.get("WWW-Authenticate", "")
                response.close()
                if challenge and self._authenticate(challenge, scope):
                    continue
                why = "no credentials" if self.username is None else "credentials refused"
                raise RegistryUnauthorized(
                    f"{method} {url}: unauthorized ({why})",
                    status=401,
                )
            break
        if response.status_code in ok:
            return response
        self._raise_for(response, method, url, what)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _raise_for(response: requests.Response, method: str, url: str, what: str) -> None:
        status = response.status_code
        text = _error_text(response) if method != "HEAD" else ""
        message = f"{method} {url}: HTTP {status}{' ' + what if what else ''} {text}".strip()
        response.close()
        if status in (401, 403):
            raise RegistryUnauthorized(message, status=status)
        if status == 404:
            raise RegistryNotFound(message, status=status)
        raise RegistryError(message, status=status)

    @staticmethod
    def _scope(repository: str, actions: str) -> str:
        return f"repository:{repository}:{actions}"

    # -- API version check ------------------------------------------------------------------------

    def ping(self) -> None:
        """GET /v2/: raises RegistryUnreachable or RegistryUnauthorized when it can't be used."""
        self._request("GET", "/v2/", scope="registry:catalog:*", ok=(200,))

    # -- blobs ------------------------------------------------------------------------------------

    def blob_size(self, repository: str, digest: str) -> int | None:
        """Size of the blob in the repository, or None when it is not there."""
        response = self._request(
            "HEAD",
            f"/v2/{repository}/blobs/{digest}",
            scope=self._scope(repository, "pull"),
            ok=(200, 404),
        )
        response.close()
        if response.status_code == 404:
            return None
        return int(response.headers.get("Content-Length", "0"))

    def blob_exists(self, repository: str, digest: str) -> bool:
        return self.blob_size(repository, digest) is not None

    def iter_blob(self, repository: str, digest: str) -> Iterator[bytes]:
        """Stream a blob, verifying its digest at the end (raises DigestMismatch)."""
        response = self._request(
            "GET",
            f"/v2/{repository}/blobs/{digest}",
            scope=self._scope(repository, "pull"),
            ok=(200,),
            stream=True,
            what=f"blob {digest}",
        )
        hasher = hashlib.sha256()
        try:
            for chunk in response.iter_content(_READ_SIZE):
                hasher.update(chunk)
                yield chunk
        except requests.RequestException as exc:
            raise RegistryUnreachable(f"GET blob {digest}: {exc}") from exc
        finally:
            response.close()
        if "sha256:" + hasher.hexdigest() != digest:
            raise DigestMismatch(f"blob {digest} from {repository} hashed differently")

    def get_blob(self, repository: str, digest: str) -> bytes:
        return b"".join(self.iter_blob(repository, digest))

    def download_blob(self, repository: str, digest: str) -> IO[bytes]:
        """The blob in a temporary file (memory up to 64 MiB, disk beyond), positioned at 0."""
        spool = tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024)  # noqa: SIM115
        for chunk in self.iter_blob(repository, digest):
            spool.write(chunk)
        spool.seek(0)
        return spool

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Cross-repository mount; False when the registry declined (then upload instead)."""
        scope = f"{self._scope(repository, 'pull,push')} {self._scope(from_repository, 'pull')}"
        response = self._request(
            "POST",
            f"/v2/{repository}/blobs/uploads/?mount={digest}&from={from_repository}",
            scope=scope,
            ok=(201, 202),
            what=f"mounting {digest} from {from_repository}",
        )
        response.close()
        if response.status_code == 201:
            return True
        # 202: the registry opened an ordinary upload session instead; close it, don't leak it.
        self._cancel_upload(repository, response.headers.get("Location"))
        return False

    def upload_blob(
        self, repository: str, digest: str, content: bytes | IO[bytes], size: int | None = None
    ) -> None:
        """Upload a blob; monolithic when it fits in one chunk, chunked PATCHes otherwise.

        A failure half-way leaves only an abandoned upload session, which the registry garbage
        collects; the blob is not visible until the final PUT with its digest succeeds.
        """
        stream: IO[bytes] = io.BytesIO(content) if isinstance(content, bytes) else content
        if size is None:
            size = len(content) if isinstance(content, bytes) else None
        push = self._scope(repository, "pull,push")
        start = self._request(
            "POST",
            f"/v2/{repository}/blobs/uploads/",
            scope=push,
            ok=(202,),
            what="starting upload",
        )
        start.close()
        location = self._location(start)
        try:
            if size is not None and size <= self.chunk_size:
                self._request(
                    "PUT",
                    self._with_digest(location, digest),
                    scope=push,
                    ok=(201,),
                    headers={"Content-Type": "application/octet-stream"},
                    data=stream.read(),
                    what=f"uploading {digest}",
                ).close()
                metrics.record_image_blob_pushed(size)
                return
            offset = 0
            while chunk := stream.read(self.chunk_size):
                response = self._request(
                    "PATCH",
                    location,
                    scope=push,
                    ok=(202,),
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                    },
                    data=chunk,
                    what=f"uploading {digest} at {offset}",
                )
                response.close()
                location = self._location(response)
                offset += len(chunk)
            self._request(
                "PUT",
                self._with_digest(location, digest),
                scope=push,
                ok=(201,),
                data=b"",
                what=f"completing {digest}",
            ).close()
            metrics.record_image_blob_pushed(offset)
        except RegistryUnreachable:
            raise  # the connection is gone: a cancel would fail the same way
        except RegistryError:
            self._cancel_upload(repository, location)
            raise

    def _cancel_upload(self, repository: str, location: str | None) -> None:
        if not location:
            return
        # Best effort: registries expire abandoned uploads anyway.
        with contextlib.suppress(RegistryError):
            self._request(
                "DELETE",
                self._absolute(location),
                scope=self._scope(repository, "pull,push"),
                ok=(200, 202, 204, 404),
            ).close()

    def _absolute(self, location: str) -> str:
        return urljoin(self.base_url + "/", location)

    def _location(self, response: requests.Response) -> str:
        location = response.headers.get("Location")
        if not location:
            raise RegistryError(f"{response.request.method} {response.url}: no Location header")
        return self._absolute(location)

    @staticmethod
    def _with_digest(location: str, digest: str) -> str:
        return f"{location}{'&' if '?' in location else '?'}digest={digest}"

    # -- manifests --------------------------------------------------------------------------------

    def get_manifest(
        self, repository: str, reference: str, accept: tuple[str, ...] = MANIFEST_MEDIA_TYPES
    ) -> Manifest:
        response = self._request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            scope=self._scope(repository, "pull"),
            ok=(200,),
            headers={"Accept": ", ".join(accept)},
            what=f"manifest {repository}:{reference}",
        )
        body = response.content
        digest = sha256_digest(body)
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatch(f"manifest {repository}@{reference} hashed to {digest}")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        if media_type not in MANIFEST_MEDIA_TYPES:
            # Some registries answer with a generic type; the body's own mediaType then decides.
            media_type = json.loads(body).get("mediaType", media_type)
        return Manifest(media_type=media_type, body=body, digest=digest)

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """Digest of the manifest a tag (or digest) points at, or None when there is none."""
        response = self._request(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            scope=self._scope(repository, "pull"),
            ok=(200, 404),
            headers={"Accept": ", ".join(MANIFEST_MEDIA_TYPES)},
        )
        response.close()
        if response.status_code == 404:
            return None
        digest = response.headers.get("Docker-Content-Digest")
        if digest:
            return digest
        return self.get_manifest(repository, reference).digest

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        """Store a manifest under a tag or its digest; returns its digest."""
        digest = sha256_digest(body)
        self._request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            scope=self._scope(repository, "pull,push"),
            ok=(201,),
            headers={"Content-Type": media_type},
            data=body,
            what=f"manifest {repository}:{reference}",
        ).close()
        return digest

    def delete_manifest(self, repository: str, digest: str) -> bool:
        """Delete a manifest by digest (every tag on it goes too); False when it was not there."""
        response = self._request(
            "DELETE",
            f"/v2/{repository}/manifests/{digest}",
            scope=self._scope(repository, "pull,push,delete"),
            ok=(200, 202, 404),
            what=f"manifest {repository}@{digest}",
        )
        response.close()
        return response.status_code != 404
