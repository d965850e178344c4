"""Staged data held by another api node: asking that node.

Each api node stages into its own ``node_staging_uri`` unless the nodes
share one directory. A node whose ``worker_self_reference_url`` is set
records it in ``os_glance_stage_host`` of the images it stages, when the
first byte arrives. A glance-direct import, the delete of a staged image,
and the pieces of a resumable stage that continue it (and the reading of
its staged length) that reach a node without the staged data are sent on
to the node named there, with the caller's identity headers (and its
X-Image-Meta-Store); that node's answer is the caller's.

Where requests go is the operator's choice only: the property is reserved
(no caller can set, change or remove it) and glance-api writes it from its
own ``worker_self_reference_url``; it must be an http(s) URL, only our two
requests go to it, redirects are not followed, and a request that was sent
on is never sent on again (two nodes that each think the other holds the
data answer 409 instead of bouncing it).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from glance_clone.common import exception, faults
from glance_clone.domain import reserved
from glance_clone.domain.import_targets import STORE_HEADER

LOG = logging.getLogger(__name__)

# Marks a request one api node sent on to another.
FORWARDED_HEADER = "X-Glance-Stage-Forwarded"
# What identifies the caller to the other node: a Keystone token, or the
# identity headers a trusted front (or our own auth_token filter) set.
IDENTITY_HEADERS = ("X-Auth-Token", "X-Identity-Status", "X-Roles", "X-Tenant-Id",
                    "X-Project-Id", "X-User-Id", "X-Service-Catalog",
                    "X-Openstack-Request-ID")
# Sent on too: the stores the caller's import goes to (import_targets).
PASSED_HEADERS = IDENTITY_HEADERS + (STORE_HEADER,)
# Seconds to wait for the node holding the staged data: an import answers
# once its task is recorded, a delete once the image is gone.
TIMEOUT = 60.0


@dataclasses.dataclass(frozen=True)
class Caller:
    """What of the caller's request another node needs."""

    headers: Mapping[str, str]
    # This request was sent on by another node already.
    forwarded: bool = False

    @classmethod
    def of(cls, headers: Mapping[str, str]) -> Caller:
        kept = {name: headers[name] for name in PASSED_HEADERS if headers.get(name)}
        return cls(kept, forwarded=bool(headers.get(FORWARDED_HEADER)))


class StageHosts:
    """Which node holds an image's staged data, and asking it."""

    def __init__(self, self_url: str | None) -> None:
        self.self_url = (self_url or "").rstrip("/") or None

    def elsewhere(self, record: dict, caller: Caller | None) -> str | None:
        """The URL of the other node holding the image's staged data, or
        None (none recorded, this node's own, or the request came from
        another node already)."""
        host = ((record.get("properties") or {}).get(reserved.STAGE_HOST) or "").rstrip("/")
        if not host or caller is None or caller.forwarded or host == self.self_url:
            return None
        parts = urlsplit(host)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            LOG.warning("Image %s: os_glance_stage_host %r is not an http(s) URL; "
                        "not asking it", record.get("id"), host)
            return None
        return host

    def stage(self, caller: Caller, host: str, image_id: str, chunks: Iterator[bytes],
              piece: tuple[int, int], length: int | None) -> int:
        """Send a piece of a resumable stage, ``piece`` = (start, total)
        with a body of ``length`` bytes (None: chunked), on to ``host``,
        which holds the bytes staged before it; the staged length it
        answers. Raises as ``send``, StagedLengthMismatch for its 416."""
        start, total = piece
        end = min(start + length, total) - 1 if length else total - 1
        headers = {"Content-Type": "application/octet-stream",
                   "Content-Range": "bytes %d-%d/%d" % (start, end, total)}
        data = _Sized(chunks, length) if length else chunks
        return _answered_size(self.send(caller, host, "PUT", image_id, "/stage",
                                        data=data, headers=headers))

    def staged_length(self, caller: Caller, host: str, image_id: str) -> int:
        """How many bytes of the image ``host`` holds staged."""
        return _answered_size(self.send(caller, host, "GET", image_id, "/stage"))

    def send(self, caller: Caller, host: str, method: str, image_id: str,
             action: str = "", body: Any = None, data: Iterable[bytes] | None = None,
             headers: Mapping[str, str] | None = None) -> requests.Response:
        """``method`` on ``host``'s /v2/images/<image_id><action>, as the
        caller, with the JSON ``body`` or the bytes ``data``; its answer
        when it succeeded. Raises the exception of the other node's 4xx,
        BadGateway (it failed or cannot be reached), GatewayTimeout."""
        url = "%s/v2/images/%s%s" % (host, quote(image_id, safe=""), action)
        sent = dict(caller.headers, **(headers or {}))
        sent.update({FORWARDED_HEADER: "1", "Accept": "text/plain"})
        try:
            reply = requests.request(method, url, headers=sent, json=body, data=data,
                                     timeout=TIMEOUT, allow_redirects=False)
        except requests.RequestException as err:
            late = isinstance(err, requests.Timeout)
            what = "did not answer in time" if late else "cannot be reached"
            LOG.warning("Node %s holding the staged data of image %s %s: %s",
                        host, image_id, what, err)
            failure = exception.GatewayTimeout if late else exception.BadGateway
            raise failure("The api node holding the image's staged data %s." % what) \
                from err
        if reply.status_code < 300:
            LOG.info("%s of image %s done by node %s, which holds its staged data",
                     method, image_id, host)
            return reply
        message = faults.explanation_from_body(reply.text)[:1000]
        staged = _staged_size(reply)
        if reply.status_code == 416 and staged is not None:
            raise exception.StagedLengthMismatch(staged)
        if reply.status_code == 415:
            raise exception.UnsupportedMediaType(message)
        if 400 <= reply.status_code < 500 and reply.status_code in faults.STATUS_EXCEPTIONS:
            raise faults.exception_for_status(reply.status_code, message)
        LOG.warning("Node %s holding the staged data of image %s answered %s: %s",
                    host, image_id, reply.status_code, message)
        raise exception.BadGateway(
            "The api node holding the image's staged data answered %s."
            % reply.status_code)


class _Sized:
    """Body chunks of a known length: requests sends them with that
    Content-Length (not chunked), as the client sent them to us."""

    def __init__(self, chunks: Iterator[bytes], length: int) -> None:
        self.chunks = chunks
        self.length = length

    def __iter__(self) -> Iterator[bytes]:
        return self.chunks

    def __len__(self) -> int:
        return self.length


def _staged_size(reply: requests.Response) -> int | None:
    """The staged length in another node's answer, if it says."""
    value = reply.headers.get(faults.STAGED_SIZE_HEADER, "")
    return int(value) if value.isdigit() else None


def _answered_size(reply: requests.Response) -> int:
    size = _staged_size(reply)
    if size is None:
        raise exception.BadGateway("The api node holding the image's staged data "
                                   "did not say how much is staged.")
    return size
