"""glance-replicator's work: copy images between glance-api v1 endpoints.

An endpoint is ``host:port`` (IPv4, ``[IPv6]``, hostname or FQDN) spoken
to over plain HTTP with an optional ``x-auth-token``. Images are listed
with ``GET /v1/images/detail?is_public=None`` paged by marker; whether the
other side has an image is asked with ``HEAD /v1/images/<id>``.

Commands (``cache-scrubber-tools.md`` section 6)

``size <server>``
    Sums the size of the active images.
``dump <server> <path>``
    Writes ``<path>/<id>`` (the image's JSON) and, for active images,
    ``<path>/<id>.img`` (its data), each only when missing. Files are
    written under a temporary name and renamed when complete and verified
    (size and MD5), so an interrupted dump leaves no half files behind and
    a re-run fills in what is missing.
``load <server> <path>``
    For each UUID-named file: an image the server has (active) gets its
    metadata updated when it differs; a missing one is uploaded from
    ``<id>.img`` keeping its id.
``livecopy <master> <slave>``
    The same without disk: active images missing on the slave are streamed
    from the master's GET straight into the slave's POST (chunked, never
    stored locally); images active on both get their metadata updated when
    it differs.
``compare <master> <slave>``
    Logs every differing field and every active image missing on the
    slave.

Fields named in ``dontreplicate`` are neither compared nor copied. Data is
checked on the way: the MD5 of the bytes read must match the master's
checksum, the slave's answer must report the same checksum and size (the
slave is also sent the checksum and size and refuses a mismatch itself);
a copy that fails the check is deleted on the slave and reported. The
multihash is checked the same way where the servers show one: v1 carries
none, so it is read from ``GET /v2/images/<id>`` (a server without v2, or
an image from before multihash, is checked by md5 alone); a dump keeps it
in the image's JSON for the load. Images
already present and identical are skipped, so re-running after an
interruption only does what is left. Progress (images done / total,
bytes) goes to stderr.

An unreachable endpoint, or one refusing the token (401, or 403 on the
listing), stops the run. Other failures are reported per image and the
run goes on; any failure makes the exit code non-zero.

Limits of the v1 API worth knowing: an image id once used on a server
cannot be created again there, so an image whose copy failed (the slave
keeps it ``killed``) or that was deleted on the slave is reported, not
copied again.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

import requests
import requests.adapters

from glance_clone.common.data_out import Outgoing
from glance_clone.common.hashing import Multihash, recorded_multihash

LOG = logging.getLogger(__name__)

# glance-replicator's --chunksize default, as documented for Glance.
CHUNK_SIZE = 65536
DEFAULT_DONTREPLICATE = "created_at date deleted_at location updated_at"
DEFAULT_TIMEOUT = 600.0          # seconds without a byte from a server
CONNECT_TIMEOUT = 10.0
PROGRESS_INTERVAL = 5.0          # seconds between progress lines of one image

META_PREFIX = "x-image-meta-"
PROPERTY_PREFIX = "x-image-meta-property-"
PROPERTY_KEY = "property-"
# Never sent: status and the deleted flag are the server's, the timestamps
# are ignored by it anyway, size and checksum describe the data.
NEVER_SENT = frozenset(("status", "deleted", "deleted_at", "created_at",
                        "updated_at", "location", "os_hash_algo", "os_hash_value"))
DATA_FIELDS = ("size", "checksum")

IMAGE_ALREADY_PRESENT = (
    "The image %s is already present on the slave, but our check for it did "
    "not find it. This indicates that we do not have permissions to see all "
    "the images on the slave server.")

_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_TAGS = re.compile(r"<[^>]*>")


# --- errors -------------------------------------------------------------------

class ReplicatorError(Exception):
    """Stops the run: the endpoint cannot be used at all."""


class EndpointUnreachable(ReplicatorError):
    pass


class EndpointUnauthorized(ReplicatorError):
    pass


class RequestFailed(Exception):
    """One request failed; the run goes on with the next image."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ImageFailed(Exception):
    """One image could not be replicated; the message says why."""


class SourceReadError(Exception):
    """Reading image data from the source failed mid-stream."""


# --- endpoints ------------------------------------------------------------------

def parse_endpoint(value: str) -> str:
    """``host:port`` as a base URL; raises ValueError with a readable reason."""
    host, sep, port_text = value.strip().rpartition(":")
    if not sep or not host:
        raise ValueError("'%s' is not host:port" % value)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError("'%s' has no valid port" % value)
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError("'%s' has no valid IPv6 address" % value) from None
    elif re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError("'%s' has no valid IPv4 address" % value) from None
    else:
        labels = host.rstrip(".").split(".")
        if len(host) > 253 or not all(_HOST_LABEL.fullmatch(x) for x in labels):
            raise ValueError("'%s' has no valid host name" % value)
    return "http://%s:%d" % (host, int(port_text))


def _explanation(response: requests.Response) -> str:
    """The server's message without webob's HTML around it."""
    text = response.text or ""
    if "json" in response.headers.get("Content-Type", ""):
        try:
            body = response.json()
            text = str(body.get("message") or body.get("explanation") or body)
        except ValueError:
            pass
    text = " ".join(_TAGS.sub(" ", text).split())
    title = "%d %s" % (response.status_code, response.reason or "")
    if text.startswith(title.strip()):
        text = text[len(title.strip()):].strip()
    return text[:500] or (response.reason or "")


def _wire_text(value: str) -> str:
    """Header values arrive as latin-1 text; servers send UTF-8."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


class Endpoint:
    """One glance-api v1 endpoint."""

    def __init__(self, address: str, token: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT,
                 session: requests.Session | None = None) -> None:
        """Raises ValueError for an invalid ``address``."""
        self.url = parse_endpoint(address)
        self.token = token or None
        self.timeout = (CONNECT_TIMEOUT, timeout)
        if session is None:
            session = requests.Session()
            # Talk to the endpoint given, never to a proxy from the environment.
            session.trust_env = False
        self.session = session

    def __str__(self) -> str:
        return self.url

    def request(self, method: str, path: str, ok: Iterable[int] = (200,),
                **kwargs: Any) -> requests.Response:
        """Send one request; raises EndpointUnreachable, EndpointUnauthorized,
        RequestFailed (for a status not in ``ok``)."""
        headers = kwargs.pop("headers", None) or {}
        if self.token:
            headers["x-auth-token"] = self.token
        LOG.debug("%s %s%s", method, self.url, path)
        try:
            response = self.session.request(method, self.url + path, headers=headers,
                                            timeout=self.timeout, **kwargs)
        except requests.Timeout as err:
            raise EndpointUnreachable("%s did not answer in time: %s" % (self.url, err))
        except requests.ConnectionError as err:
            raise EndpointUnreachable("cannot reach %s: %s" % (self.url, _reason(err)))
        LOG.debug("%s %s%s -> %s", method, self.url, path, response.status_code)
        if response.status_code in ok:
            return response
        message = _explanation(response) if method != "HEAD" else response.reason
        response.close()
        if response.status_code == 401:
            raise EndpointUnauthorized(
                "%s refused the token (401 Unauthorized): %s" % (self.url, message))
        raise RequestFailed(response.status_code, "%s %s%s answered %d: %s" % (
            method, self.url, path, response.status_code, message))

    def images(self) -> Iterator[dict[str, Any]]:
        """Every image the token may list, paged; raises ReplicatorError."""
        params = {"is_public": "None"}
        while True:
            try:
                page = self.request("GET", "/v1/images/detail", params=params).json()
            except RequestFailed as err:
                if err.status == 403:
                    raise EndpointUnauthorized("%s refused to list images (403 "
                                               "Forbidden): %s" % (self.url, err))
                raise ReplicatorError("cannot list the images of %s: %s" % (self.url, err))
            except ValueError:
                raise ReplicatorError("%s answered the image list with something "
                                      "other than JSON" % self.url)
            images = page.get("images") if isinstance(page, dict) else None
            if not images:
                return
            yield from images
            params["marker"] = images[-1]["id"]

    def head(self, image_id: str) -> dict[str, str] | None:
        """The image's metadata in flat form, None if the server has no such image."""
        response = self.request("HEAD", "/v1/images/%s" % image_id, ok=(200, 404))
        if response.status_code == 404:
            return None
        return meta_from_headers(response.headers.items())

    def multihash(self, image_id: str) -> Multihash | None:
        """The image's multihash as v2 shows it; None when the server has no
        v2, does not show the image there, or the image has none."""
        try:
            response = self.request("GET", "/v2/images/%s" % image_id)
        except RequestFailed as err:
            LOG.debug("No multihash of image %s from %s: %s", image_id, self.url, err)
            return None
        try:
            image = response.json()
        except ValueError:
            return None
        return recorded_multihash(image) if isinstance(image, dict) else None

    def download(self, image_id: str) -> requests.Response:
        """A streaming response with the image data; close it when done."""
        return self.request("GET", "/v1/images/%s" % image_id, stream=True)

    def create(self, meta: dict[str, str], body: Any = None) -> dict[str, Any]:
        """POST a new image (with data when ``body`` is given); returns it."""
        return self._write("POST", "/v1/images", 201, meta, body)

    def update(self, image_id: str, meta: dict[str, str], body: Any = None) -> dict[str, Any]:
        """PUT metadata (and data into a queued image); returns the image."""
        return self._write("PUT", "/v1/images/%s" % image_id, 200, meta, body)

    def _write(self, method: str, path: str, status: int, meta: dict[str, str],
               body: Any) -> dict[str, Any]:
        headers = to_headers(meta)
        if body is not None:
            headers["Content-Type"] = "application/octet-stream"
        response = self.request(method, path, ok=(status,), headers=headers, data=body)
        try:
            image = response.json()["image"]
        except (ValueError, KeyError, TypeError):
            image = None
        if not isinstance(image, dict):
            raise RequestFailed(status, "%s %s%s answered without an image object"
                                % (method, self.url, path))
        return image

    def delete(self, image_id: str) -> None:
        self.request("DELETE", "/v1/images/%s" % image_id, ok=(200, 204, 404))


def _reason(err: Exception) -> str:
    text = str(err)
    for marker in ("Connection refused", "Name or service not known",
                   "No route to host", "timed out", "Temporary failure in name resolution"):
        if marker in text:
            return marker.lower()
    return text


# --- metadata ---------------------------------------------------------------------

def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def flatten(image: dict[str, Any]) -> dict[str, str]:
    """An image's JSON as the strings HEAD would show; properties under
    ``property-<name>`` (names lower-cased, as v1 headers carry them)."""
    flat = {key: _text(value) for key, value in image.items()
            if key != "properties" and value is not None
            and not isinstance(value, (dict, list))}
    for name, value in (image.get("properties") or {}).items():
        if value is not None:
            flat[PROPERTY_KEY + name.lower()] = _text(value)
    return flat


def meta_from_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    flat = {}
    for name, value in headers:
        key = name.lower()
        if key.startswith(PROPERTY_PREFIX):
            flat[PROPERTY_KEY + key[len(PROPERTY_PREFIX):]] = _wire_text(value)
        elif key.startswith(META_PREFIX):
            flat[key[len(META_PREFIX):]] = _wire_text(value)
    return flat


def to_headers(meta: dict[str, str]) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    for key, value in meta.items():
        name = (PROPERTY_PREFIX + key[len(PROPERTY_KEY):] if key.startswith(PROPERTY_KEY)
                else META_PREFIX + key)
        # http.client sends str headers as latin-1: UTF-8 goes as bytes.
        headers[name] = value if value.isascii() else value.encode("utf-8")
    return headers


def parse_fields(text: str) -> frozenset[str]:
    """``dontreplicate``: names separated by spaces (or commas)."""
    return frozenset(f for f in re.split(r"[\s,]+", text or "") if f)


def differences(source: dict[str, str], target: dict[str, str],
                ignored: Iterable[str]) -> dict[str, tuple[str | None, str | None]]:
    """Fields whose values differ: name -> (source value, target value)."""
    skip = set(ignored)
    keys = (set(source) | set(target)) - skip
    return {key: (source.get(key), target.get(key)) for key in sorted(keys)
            if source.get(key) != target.get(key)}


# --- progress -----------------------------------------------------------------------

def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return ("%d %s" % (size, unit)) if unit == "B" else ("%.1f %s" % (size, unit))
        size /= 1024
    raise AssertionError("unreachable")


class Progress:
    """Lines on ``stream``: one per image done, and for long transfers one
    every few seconds with the bytes moved so far."""

    def __init__(self, stream: IO[str], total: int, command: str,
                 interval: float = PROGRESS_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.total = total
        self.command = command
        self.done = 0
        self.bytes = 0
        self.interval = interval
        self.clock = clock
        self._last = clock()

    def _say(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def transferring(self, image_id: str, moved: int, size: int) -> None:
        now = self.clock()
        if now - self._last >= self.interval:
            self._last = now
            self._say("%s: [%d/%d] %s: %s of %s" % (
                self.command, self.done + 1, self.total, image_id,
                human_size(moved), human_size(size)))

    def image_done(self, image_id: str, what: str, moved: int = 0) -> None:
        self.done += 1
        self.bytes += moved
        self._last = self.clock()
        self._say("%s: [%d/%d] %s %s%s; %s moved so far" % (
            self.command, self.done, self.total, image_id, what,
            " (%s)" % human_size(moved) if moved else "", human_size(self.bytes)))


class CheckedStream:
    """Image data passing through: counted, hashed, reported.

    Errors of the source are raised as SourceReadError so that they are
    not taken for errors of the destination the data is being sent to.
    """

    def __init__(self, chunks: Iterable[bytes], image_id: str, size: int,
                 progress: Progress, multihash: str | None = None) -> None:
        self.image_id = image_id
        self._out = Outgoing(
            chunks, None, SourceReadError, digest=True, multihash=multihash,
            on_chunk=lambda moved: progress.transferring(image_id, moved, size))

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._out
        except (requests.RequestException, OSError) as err:
            raise SourceReadError("reading the data of image %s failed after %d "
                                  "bytes: %s" % (self.image_id, self.count, err))

    @property
    def count(self) -> int:
        return self._out.bytes_sent

    @property
    def finished(self) -> bool:
        return self._out.finished

    @property
    def checksum(self) -> str:
        return self._out.checksum or ""

    def multihash_problem(self, multihash: Multihash | None) -> str:
        """Why the data read is not the one whose multihash is ``multihash``, or ''."""
        if multihash is None or self._out.multihash == multihash[1]:
            return ""
        return "hashes to %s %s, %s expected" % (
            multihash[0], self._out.multihash, multihash[1])


def read_file_chunks(fh: IO[bytes], size: int) -> Iterator[bytes]:
    return iter(lambda: fh.read(size), b"")


# --- the commands -------------------------------------------------------------------

@dataclasses.dataclass
class Options:
    chunk_size: int = CHUNK_SIZE
    dontreplicate: frozenset[str] = parse_fields(DEFAULT_DONTREPLICATE)
    metaonly: bool = False


@dataclasses.dataclass
class Outcome:
    """What a command did, by image id."""

    copied: list[str] = dataclasses.field(default_factory=list)
    updated: list[str] = dataclasses.field(default_factory=list)
    unchanged: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    differing: dict[str, str] = dataclasses.field(default_factory=dict)

    def summary(self) -> str:
        parts = ["%d copied" % len(self.copied), "%d updated" % len(self.updated),
                 "%d unchanged" % len(self.unchanged), "%d skipped" % len(self.skipped),
                 "%d failed" % len(self.failed)]
        return ", ".join(parts)


class Replicator:
    def __init__(self, options: Options, progress_stream: IO[str]) -> None:
        self.options = options
        self.stream = progress_stream

    # -- shared steps --------------------------------------------------------------
    def _list(self, endpoint: Endpoint) -> list[dict[str, Any]]:
        return list(endpoint.images())

    def _sendable(self, flat: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in flat.items()
                if k not in self.options.dontreplicate and k not in NEVER_SENT}

    def _sync_metadata(self, target: Endpoint, source: dict[str, str],
                       present: dict[str, str], outcome: Outcome) -> str:
        """Bring an image present on ``target`` up to date; returns what it did."""
        image_id = source["id"]
        for field in DATA_FIELDS:
            if field in source and present.get(field) != source[field]:
                raise ImageFailed(
                    "image %s has different data on %s (%s %s there, %s here); "
                    "not touched" % (image_id, target, field, present.get(field),
                                     source[field]))
        ignored = set(self.options.dontreplicate) | NEVER_SENT
        diff = differences(source, present, ignored)
        if not diff:
            outcome.unchanged.append(image_id)
            return "unchanged"
        LOG.info("Image %s metadata has changed: %s", image_id, ", ".join(diff))
        meta = self._sendable(source)
        meta.pop("id", None)
        meta.pop("size", None)
        meta.pop("checksum", None)
        target.update(image_id, meta)
        outcome.updated.append(image_id)
        return "metadata updated"

    def _upload(self, target: Endpoint, source: dict[str, str],
                chunks: Iterable[bytes], progress: Progress,
                into_queued: bool = False, multihash: Multihash | None = None) -> int:
        """Send the data of ``source`` to ``target``; returns the bytes sent.

        Raises ImageFailed (and deletes the copy) when the checksum, size or
        multihash the target reports, or the hashes of the bytes read,
        differ from the source's (``multihash``: None when it has none);
        SourceReadError, RequestFailed, ReplicatorError.
        """
        image_id = source["id"]
        size = int(source.get("size") or 0)
        meta = self._sendable(source)
        stream = CheckedStream(chunks, image_id, size, progress,
                               multihash[0] if multihash else None)
        body: Any = iter(stream) if size else None
        try:
            if into_queued:
                meta.pop("id", None)
                created = target.update(image_id, meta, body=body)
            else:
                created = target.create(meta, body=body)
        except EndpointUnreachable as err:
            # A server may answer (and close) before reading the whole body;
            # that is this image's problem as long as the server still answers.
            try:
                target.head(image_id)
            except ReplicatorError:
                raise err from None
            raise ImageFailed("%s closed the connection while receiving image %s: %s"
                              % (target, image_id, err))
        except RequestFailed as err:
            if err.status == 409 and not into_queued:
                raise ImageFailed(IMAGE_ALREADY_PRESENT % image_id)
            if stream.finished and source.get("checksum") \
                    and stream.checksum != source["checksum"]:
                self._discard(target, image_id)
                raise ImageFailed(
                    "checksum mismatch for image %s: the source records %s but its "
                    "data hashes to %s; the copy was refused by %s and deleted"
                    % (image_id, source["checksum"], stream.checksum, target))
            raise ImageFailed("%s" % err)
        problems = []
        if source.get("checksum") and created.get("checksum") != source["checksum"]:
            problems.append("checksum %s on %s, %s on the source"
                            % (created.get("checksum"), target, source["checksum"]))
        if size and str(created.get("size")) != str(size):
            problems.append("size %s on %s, %s on the source"
                            % (created.get("size"), target, size))
        problems.extend(self._multihash_problems(target, image_id, stream, multihash))
        if problems:
            self._discard(target, image_id)
            raise ImageFailed("checksum mismatch for image %s: %s; the copy was "
                              "deleted" % (image_id, "; ".join(problems)))
        return stream.count

    @staticmethod
    def _multihash_problems(target: Endpoint, image_id: str, stream: CheckedStream,
                            multihash: Multihash | None) -> list[str]:
        if multihash is None:
            return []
        problems = []
        read = stream.multihash_problem(multihash)
        if read:
            problems.append("the data read " + read)
        there = target.multihash(image_id)
        if there is not None and there[0] == multihash[0] and there != multihash:
            problems.append("%s %s on %s, %s on the source"
                            % (there[0], there[1], target, multihash[1]))
        return problems

    def _discard(self, target: Endpoint, image_id: str) -> None:
        try:
            target.delete(image_id)
            LOG.warning("Deleted the bad copy of image %s on %s", image_id, target)
        except (RequestFailed, ReplicatorError) as err:
            LOG.error("Could not delete the bad copy of image %s on %s: %s",
                      image_id, target, err)

    def _unusable(self, image_id: str, status: str | None, target: Endpoint,
                  outcome: Outcome) -> str:
        """An image the target has in a status we cannot copy into."""
        if status == "killed":
            outcome.failed[image_id] = (
                "image %s is killed on %s (an earlier copy failed); the v1 API "
                "cannot create it again with the same id" % (image_id, target))
            LOG.error("%s", outcome.failed[image_id])
            return "failed"
        LOG.warning("Image %s is %s on %s; skipped", image_id, status, target)
        outcome.skipped.append(image_id)
        return "skipped (%s there)" % status

    # -- size -----------------------------------------------------------------------
    def size(self, server: Endpoint) -> tuple[int, int]:
        """(total bytes, image count) of the active images."""
        total = count = 0
        for image in server.images():
            if image.get("status") == "active":
                total += int(image.get("size") or 0)
                count += 1
        return total, count

    # -- livecopy ---------------------------------------------------------------------
    def livecopy(self, master: Endpoint, slave: Endpoint) -> Outcome:
        outcome = Outcome()
        images = self._list(master)
        progress = Progress(self.stream, len(images), "livecopy")
        for image in images:
            image_id = image["id"]
            moved = 0
            try:
                what, moved = self._livecopy_one(master, slave, image, progress, outcome)
            except (ImageFailed, RequestFailed, SourceReadError) as err:
                outcome.failed[image_id] = str(err)
                LOG.error("%s", err)
                what = "failed"
            progress.image_done(image_id, what, moved)
        return outcome

    def _livecopy_one(self, master: Endpoint, slave: Endpoint, image: dict[str, Any],
                      progress: Progress, outcome: Outcome) -> tuple[str, int]:
        image_id = image["id"]
        source = flatten(image)
        present = slave.head(image_id)
        if present is not None and present.get("status") == "active":
            return self._sync_metadata(slave, source, present, outcome), 0
        if image.get("status") != "active":
            outcome.skipped.append(image_id)
            return "skipped (%s here)" % image.get("status"), 0
        if present is not None and present.get("status") != "queued":
            return self._unusable(image_id, present.get("status"), slave, outcome), 0
        if self.options.metaonly:
            outcome.skipped.append(image_id)
            return "skipped (metaonly)", 0
        LOG.info("Image %s is being synced", image_id)
        multihash = master.multihash(image_id)
        response = master.download(image_id)
        try:
            moved = self._upload(slave, source,
                                 response.iter_content(self.options.chunk_size),
                                 progress, into_queued=present is not None,
                                 multihash=multihash)
        finally:
            response.close()
        outcome.copied.append(image_id)
        return "copied", moved

    # -- compare ---------------------------------------------------------------------
    def compare(self, master: Endpoint, slave: Endpoint) -> Outcome:
        outcome = Outcome()
        ignored = self.options.dontreplicate
        for image in master.images():
            image_id = image["id"]
            present = slave.head(image_id)
            if present is not None:
                diff = differences(flatten(image), present, ignored)
                for key, (here, there) in diff.items():
                    LOG.warning("%s: field %s differs (source is %s, destination is %s)",
                                image_id, key, here, "undefined" if there is None else there)
                if diff:
                    outcome.differing[image_id] = "diff"
                else:
                    LOG.debug("%s is identical", image_id)
                    outcome.unchanged.append(image_id)
            elif image.get("status") == "active":
                LOG.warning("Image %s entirely missing from the destination", image_id)
                outcome.differing[image_id] = "missing"
        return outcome

    # -- dump -------------------------------------------------------------------------
    def dump(self, server: Endpoint, path: str) -> Outcome:
        outcome = Outcome()
        os.makedirs(path, exist_ok=True)
        images = self._list(server)
        progress = Progress(self.stream, len(images), "dump")
        for image in images:
            image_id = image["id"]
            moved = 0
            try:
                what, moved = self._dump_one(server, image, path, progress, outcome)
            except (ImageFailed, RequestFailed, SourceReadError, OSError) as err:
                outcome.failed[image_id] = str(err)
                LOG.error("%s", err)
                what = "failed"
            progress.image_done(image_id, what, moved)
        return outcome

    def _dump_one(self, server: Endpoint, image: dict[str, Any], path: str, progress: Progress,
                  outcome: Outcome) -> tuple[str, int]:
        image_id = image["id"]
        if not _is_uuid(image_id):
            raise ImageFailed("image id %r cannot name a dump file" % image_id)
        meta_path = os.path.join(path, image_id)
        data_path = meta_path + ".img"
        moved = 0
        wrote = []
        if image.get("status") == "active":
            multihash = server.multihash(image_id)
            if multihash is not None:
                # Kept in the dump for the load to check (v1 shows none).
                image = dict(image, os_hash_algo=multihash[0], os_hash_value=multihash[1])
        if (image.get("status") == "active" and not self.options.metaonly
                and not os.path.exists(data_path)):
            moved = self._dump_data(server, image, data_path, progress)
            wrote.append("data")
        if not os.path.exists(meta_path):
            _write_atomically(meta_path, json.dumps(image).encode("utf-8"))
            wrote.append("metadata")
        if wrote:
            outcome.copied.append(image_id)
            return "stored (%s)" % " and ".join(wrote), moved
        outcome.unchanged.append(image_id)
        return "already dumped", 0

    def _dump_data(self, server: Endpoint, image: dict[str, Any], data_path: str,
                   progress: Progress) -> int:
        image_id = image["id"]
        size = int(image.get("size") or 0)
        multihash = recorded_multihash(image)
        response = server.download(image_id)
        try:
            stream = CheckedStream(response.iter_content(self.options.chunk_size),
                                   image_id, size, progress,
                                   multihash[0] if multihash else None)
            _write_atomically(data_path, stream)
        finally:
            response.close()
        problem = None
        if image.get("checksum") and stream.checksum != image["checksum"]:
            problem = "hashes to %s, %s expected" % (stream.checksum, image["checksum"])
        elif stream.count != size:
            problem = "has %d bytes, %d expected" % (stream.count, size)
        elif stream.multihash_problem(multihash):
            problem = stream.multihash_problem(multihash)
        if problem:
            os.unlink(data_path)
            raise ImageFailed("checksum mismatch for image %s: the data read %s; "
                              "not kept" % (image_id, problem))
        return stream.count

    # -- load ---------------------------------------------------------------------------
    def load(self, server: Endpoint, path: str) -> Outcome:
        outcome = Outcome()
        names = sorted(n for n in os.listdir(path) if _is_uuid(n))
        progress = Progress(self.stream, len(names), "load")
        for image_id in names:
            moved = 0
            try:
                what, moved = self._load_one(server, path, image_id, progress, outcome)
            except (ImageFailed, RequestFailed, SourceReadError, OSError, ValueError) as err:
                outcome.failed[image_id] = str(err)
                LOG.error("%s", err)
                what = "failed"
            progress.image_done(image_id, what, moved)
        return outcome

    def _load_one(self, server: Endpoint, path: str, image_id: str,
                  progress: Progress, outcome: Outcome) -> tuple[str, int]:
        meta_path = os.path.join(path, image_id)
        with open(meta_path, encoding="utf-8") as fh:
            image = json.load(fh)
        if not isinstance(image, dict) or image.get("id") != image_id:
            raise ImageFailed("%s does not hold the metadata of image %s"
                              % (meta_path, image_id))
        source = flatten(image)
        present = server.head(image_id)
        if present is not None and present.get("status") == "active":
            return self._sync_metadata(server, source, present, outcome), 0
        if present is not None and present.get("status") != "queued":
            return self._unusable(image_id, present.get("status"), server, outcome), 0
        data_path = meta_path + ".img"
        if self.options.metaonly or not os.path.exists(data_path):
            LOG.info("%s dump has no image data (or --metaonly); skipping", image_id)
            outcome.skipped.append(image_id)
            return "skipped (no data)", 0
        with open(data_path, "rb") as fh:
            moved = self._upload(server, source,
                                 read_file_chunks(fh, self.options.chunk_size),
                                 progress, into_queued=present is not None,
                                 multihash=recorded_multihash(image))
        outcome.copied.append(image_id)
        return "loaded", moved


def _is_uuid(name: str) -> bool:
    try:
        return str(uuid.UUID(name)) == name.lower()
    except ValueError:
        return False


def _write_atomically(path: str, data: bytes | Iterable[bytes]) -> None:
    """Write under a temporary name in the same directory, then rename."""
    directory, name = os.path.split(path)
    temporary = os.path.join(directory, ".%s.%s.partial" % (name, uuid.uuid4().hex))
    try:
        with open(temporary, "xb") as fh:
            if isinstance(data, bytes):
                fh.write(data)
            else:
                for chunk in data:
                    fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
