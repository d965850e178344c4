"""Swift store: image data as objects in one OpenStack Swift container.

Options (section ``[glance_store]``, Glance's names):

``swift_store_auth_address``
    Auth endpoint, e.g. ``http://swift:8080/auth/v1.0`` (tempauth) or
    ``https://keystone:5000/v3``; without a scheme https is meant. Required.
``swift_store_user`` / ``swift_store_key``
    Credentials. For keystone (auth versions 2 and 3) the user is written
    ``project:user``. Required; the key is a secret.
``swift_store_auth_version`` (default ``2``)
    ``1`` for tempauth/swauth, ``2`` or ``3`` for keystone (needs
    keystoneauth1, installed with the ``keystone`` extra; with ``3`` the user
    and project are looked up in the ``default`` domain). Tokens are reused
    across requests and renewed when Swift answers 401.
``swift_store_container`` (default ``glance``)
    Container holding the images; ``swift_store_create_container_on_put``
    (default False) creates it on the first upload, otherwise an upload to a
    missing container fails with a message saying so.
``swift_store_large_object_size`` (MB, default 5120) /
``swift_store_large_object_chunk_size`` (MB, default 200)
    Images larger than the first, and images of unknown size, are written as
    segments of the second, ``<image_id>-00001``, ``<image_id>-00002``...
    in the same container, followed by a dynamic large object manifest named
    ``<image_id>`` (as Glance writes them).
``swift_store_auth_insecure``, ``swift_store_cacert``, ``swift_store_ssl_compression``
    TLS settings for https auth and storage endpoints.
``swift_store_region``, ``swift_store_endpoint_type`` (``publicURL``),
``swift_store_service_type`` (``object-store``)
    Which catalog endpoint keystone auth picks.
``swift_store_retry_get_count`` (default 0)
    How many times a download cut off mid-way is resumed (with a Range
    request checked against the ETag) before it fails.

Locations are Glance's ``swift+http://<user>:<key>@<auth address without
scheme>/<container>/<image_id>`` (``swift+https`` for https): the
credentials travel inside the stored location, URL-quoted, and get, delete
and get_size use them, so images stay readable whatever the configuration
says later. A location is never shown to API clients nor logged (log lines
name the container and object); error messages name the store, never the
key.

Every byte is streamed: an upload holds one incoming chunk at a time, a
download one ``CHUNK_SIZE`` chunk. A failed upload (Swift error, or an error
raised by the incoming chunks, such as the size cap) deletes every segment
and manifest it wrote before the error propagates. A download cut off
before ``Content-Length`` bytes raises instead of ending short.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from oslo_config import cfg

from glance_clone.common import exception
from glance_clone.common.data_in import Incoming
from glance_clone.store.base import CHUNK_SIZE, AddResult, Driver, ReadStream, remote_download
from glance_clone.store.credentialed_uri import UriFormat, check_object_name

try:
    from swiftclient import client as swift_client
except ImportError:  # pragma: no cover - exercised only without the package
    swift_client = None

LOG = logging.getLogger(__name__)

GROUP = "glance_store"
MiB = 1024 * 1024

OPTS = [
    cfg.StrOpt("swift_store_auth_address",
               help="Swift (tempauth) or keystone auth URL; https when no scheme."),
    cfg.StrOpt("swift_store_user",
               help="User to authenticate as; 'project:user' for keystone."),
    cfg.StrOpt("swift_store_key", secret=True,
               help="Key (password) of swift_store_user."),
    cfg.StrOpt("swift_store_auth_version", default="2",
               help="Auth API version: 1 (tempauth), 2 or 3 (keystone)."),
    cfg.StrOpt("swift_store_container", default="glance",
               help="Container the Swift store keeps images in."),
    cfg.BoolOpt("swift_store_create_container_on_put", default=False,
                help="Create the container on upload when it is missing."),
    cfg.IntOpt("swift_store_large_object_size", default=5 * 1024, min=1,
               help="Images larger than this many MB are stored in segments."),
    cfg.IntOpt("swift_store_large_object_chunk_size", default=200, min=1,
               help="Size in MB of the segments of large images."),
    cfg.BoolOpt("swift_store_auth_insecure", default=False,
                help="Do not verify the TLS certificates of auth and Swift."),
    cfg.StrOpt("swift_store_cacert",
               help="CA bundle to verify the TLS certificates with."),
    cfg.BoolOpt("swift_store_ssl_compression", default=True,
                help="Allow compression on TLS connections."),
    cfg.StrOpt("swift_store_region",
               help="Region of the Swift endpoint in the keystone catalog."),
    cfg.StrOpt("swift_store_endpoint_type", default="publicURL",
               help="Catalog endpoint type: publicURL, internalURL or adminURL."),
    cfg.StrOpt("swift_store_service_type", default="object-store",
               help="Catalog service type of Swift."),
    cfg.IntOpt("swift_store_retry_get_count", default=0, min=0,
               help="Times an interrupted download is resumed before failing."),
]

AUTH_VERSIONS = ("1", "2", "3")
# Idempotent calls (HEAD, DELETE, listings, the start of a GET) are retried
# this often on connection errors and 5xx, briefly: a restarting proxy.
RETRIES = 2
BACKOFF = 0.5
MAX_BACKOFF = 2.0
# Seconds one socket operation may take; a hung proxy must not hold an
# upload or a download forever.
TIMEOUT = 120.0
# Request bodies are handed to the HTTP client in pieces this large: upload
# chunks arrive as 1 MiB reads, and passing them whole avoids slicing copies.
WRITE_SIZE = MiB
# What follows an image id in the names of its segments.
SEGMENT_NAME = re.compile(r"-[0-9]{5,}")
NOT_FOUND_MESSAGE = "Swift could not find the image data."
_INTERFACES = {"publicurl": "public", "internalurl": "internal", "adminurl": "admin"}


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the Swift store options in ``[glance_store]``."""
    conf.register_opts(OPTS, group=GROUP)


# --- locations ---------------------------------------------------------------
@dataclass(frozen=True)
class Credentials:
    """Where and as whom to authenticate (the repr never shows the key)."""

    auth_url: str
    user: str
    key: str = field(default="", repr=False)


@dataclass(frozen=True)
class Location:
    """A parsed Swift location."""

    credentials: Credentials
    container: str
    obj: str


URI = UriFormat(store="Swift", a_store="a Swift",
                prefixes={"http": "swift+http", "https": "swift+https"}, default="https",
                credentials="user:key", missing="user:password",
                path="an auth address, a container and an object")


def location_url(creds: Credentials, container: str, obj: str) -> str:
    """Glance's location URI for an object (it contains the key)."""
    return URI.format(creds.auth_url, creds.user, creds.key, container, obj)


def parse_location(url: str, schemes: Iterable[str]) -> Location:
    """Split a Swift location; raises BadStoreUri (whose message has no key)."""
    creds, container, obj = URI.parse(url, schemes)
    return Location(Credentials(*creds), container, obj)


# --- errors ------------------------------------------------------------------
def _status(err: BaseException) -> int | None:
    return getattr(err, "http_status", None)


def _write_error(err: Exception, container: str) -> exception.GlanceError:
    """Our exception for a failed upload step (the message names no secret)."""
    status = _status(err)
    LOG.error("Swift store write failed: %s", err)
    if status == 401:
        return exception.StorageWriteDenied(
            "Swift store authentication failed (401 Unauthorized): check "
            "swift_store_user and swift_store_key.")
    if status == 403:
        return exception.StorageWriteDenied(
            f"Swift store denied writing to container {container} (403 Forbidden).")
    if status in (413, 507):
        return exception.StorageFull(
            f"Swift store is full or over quota ({status}).")
    if status == 404:
        return exception.StoreError(
            f"Swift container {container} disappeared during the upload.")
    if status is None or status >= 500 or status in (408, 429, 498):
        return exception.ServiceUnavailable("Swift store is unavailable; try again later.")
    return exception.StoreError(f"Swift store refused the upload ({status}).")


def _read_error(err: Exception) -> exception.GlanceError:
    """Our exception for a failed get/HEAD/delete."""
    status = _status(err)
    if status == 404:
        return exception.NotFound(NOT_FOUND_MESSAGE)
    LOG.error("Swift store request failed: %s", err)
    if status in (401, 403):
        return exception.StoreError(
            f"Swift store refused the credentials of the image location ({status}).")
    if status is None or status >= 500 or status in (408, 429, 498):
        return exception.RemoteServiceUnavailable("Swift store is unavailable.")
    return exception.StoreError(f"Swift store request failed ({status}).")


class SwiftDriver(Driver):
    """Stores images as (possibly segmented) objects in one Swift container."""

    schemes = ("swift", "swift+http", "swift+https")

    @classmethod
    def register_opts(cls, conf: cfg.ConfigOpts) -> None:
        register_opts(conf)

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        super().__init__(conf)
        if swift_client is None:
            raise exception.MissingDependency(
                feature="The swift store", package="python-swiftclient", extra="swift")
        opts = conf[GROUP]
        missing = [name for name in ("swift_store_auth_address", "swift_store_user",
                                     "swift_store_key") if not opts[name]]
        if missing:
            raise exception.ConfigError(
                f"{', '.join(missing)} must be set when the swift store is enabled")
        # Glance accepted "2", "2.0", "v3"...
        self.auth_version = str(opts.swift_store_auth_version).strip().lower()
        self.auth_version = self.auth_version.lstrip("v").split(".", 1)[0]
        if self.auth_version not in AUTH_VERSIONS:
            raise exception.ConfigError(
                f"swift_store_auth_version {opts.swift_store_auth_version!r} is not "
                f"one of {', '.join(AUTH_VERSIONS)}")
        if self.auth_version != "1":
            try:
                import keystoneauth1  # noqa: F401
            except ImportError as err:
                raise exception.MissingDependency(
                    feature="swift_store_auth_version %s" % self.auth_version,
                    package="keystoneauth1", extra="keystone") from err
        self.container = opts.swift_store_container
        if not self.container or "/" in self.container:
            raise exception.ConfigError(
                f"swift_store_container {self.container!r} is not a container name")
        address = opts.swift_store_auth_address.strip()
        if "://" not in address:
            address = "https://" + address
        self.credentials = Credentials(address.rstrip("/"), opts.swift_store_user,
                                       opts.swift_store_key)
        self.create_container = opts.swift_store_create_container_on_put
        self.large_object_size = opts.swift_store_large_object_size * MiB
        self.segment_size = opts.swift_store_large_object_chunk_size * MiB
        self.retry_get_count = opts.swift_store_retry_get_count
        self._tls = {"insecure": opts.swift_store_auth_insecure,
                     "cacert": opts.swift_store_cacert,
                     "ssl_compression": opts.swift_store_ssl_compression}
        endpoint_type = opts.swift_store_endpoint_type
        self._os_options = {
            "region_name": opts.swift_store_region,
            "service_type": opts.swift_store_service_type,
            "endpoint_type": _INTERFACES.get(endpoint_type.lower(), endpoint_type),
        }
        # (auth url, user, key) -> (storage url, token) for tempauth, or the
        # keystoneauth session that caches and renews keystone tokens.
        self._tokens: dict[Credentials, tuple[str, str]] = {}
        self._sessions: dict[Credentials, Any] = {}
        self._lock = threading.Lock()
        # swiftclient logs a prefix of secret headers (X-Auth-Key, tokens);
        # show none of it.
        swift_client.logger_settings["reveal_sensitive_prefix"] = 0

    # --- connections --------------------------------------------------------
    def _connect(self, creds: Credentials, retries: int = RETRIES) -> Any:
        """A swiftclient Connection (one per operation: they are not shareable)."""
        kwargs: dict[str, Any] = dict(
            retries=retries, starting_backoff=BACKOFF, max_backoff=MAX_BACKOFF,
            timeout=TIMEOUT, os_options=dict(self._os_options), **self._tls)
        if self.auth_version == "1":
            kwargs.update(authurl=creds.auth_url, user=creds.user, key=creds.key,
                          auth_version="1")
            cached = self._tokens.get(creds)
            if cached:
                kwargs.update(preauthurl=cached[0], preauthtoken=cached[1])
        else:
            kwargs["session"] = self._keystone_session(creds)
        return swift_client.Connection(**kwargs)

    def _keystone_session(self, creds: Credentials) -> Any:
        with self._lock:
            session = self._sessions.get(creds)
            if session is not None:
                return session
            from keystoneauth1 import session as ks_session
            from keystoneauth1.identity import v2, v3

            project, colon, user = creds.user.partition(":")
            if not colon:
                project, user = "", creds.user
            auth: Any
            if self.auth_version == "2":
                auth = v2.Password(auth_url=creds.auth_url, username=user,
                                   password=creds.key, tenant_name=project or None)
            else:
                auth = v3.Password(auth_url=creds.auth_url, username=user,
                                   password=creds.key, project_name=project or None,
                                   user_domain_id="default",
                                   project_domain_id="default")
            verify: Any = not self._tls["insecure"] and (self._tls["cacert"] or True)
            session = ks_session.Session(auth=auth, verify=verify, timeout=TIMEOUT)
            self._sessions[creds] = session
            return session

    def _remember(self, creds: Credentials, conn: Any) -> None:
        if self.auth_version == "1" and conn.url and conn.token:
            self._tokens[creds] = (conn.url, conn.token)

    def _location(self, url: str) -> Location:
        return parse_location(url, self.schemes)

    # --- add ----------------------------------------------------------------
    def add(self, image_id: str, chunks: Iterable[bytes], size: int) -> AddResult:
        """Upload ``chunks`` as ``<container>/<image_id>`` (segmented when large).

        Raises Invalid, Duplicate, StorageFull (413/507 from Swift),
        StorageWriteDenied (bad credentials, 403), ServiceUnavailable,
        StoreError (missing container), and re-raises what ``chunks``
        raises; on any failure every object written is deleted first.
        """
        check_object_name(image_id)
        creds, container = self.credentials, self.container
        reader = Incoming.wrap(chunks)
        written: list[str] = []
        conn = self._connect(creds)
        try:
            self._prepare(conn, container, image_id)
            if 0 < size <= self.large_object_size:
                self._put_single(conn, container, image_id, reader, written)
            else:
                self._put_segmented(conn, container, image_id, reader, written)
            self._remember(creds, conn)
        except BaseException as err:
            conn.close()
            self._remove_quietly(creds, container, written)
            reader.reraise(err, lambda error: _write_error(error, container))
        conn.close()
        LOG.debug("Wrote %d bytes of image %s to Swift %s/%s in %d object(s)",
                  reader.bytes_read, image_id, container, image_id, len(written))
        return (location_url(creds, container, image_id), reader.bytes_read,
                reader.checksum, {})

    def _prepare(self, conn: Any, container: str, image_id: str) -> None:
        """Make sure the container exists and the object does not.

        One listing answers both (a name sorts before its segments' names),
        and, unlike a HEAD of a missing object, its answer is a 200.
        """
        try:
            _, listing = conn.get_container(container, prefix=image_id, limit=1)
        except swift_client.ClientException as err:
            if _status(err) != 404:
                raise
            if not self.create_container:
                raise exception.StoreError(
                    f"Swift container {container} does not exist; create it or set "
                    "swift_store_create_container_on_put.") from err
            LOG.info("Creating Swift container %s", container)
            conn.put_container(container)
            return
        if listing and listing[0].get("name") == image_id:
            raise exception.Duplicate(f"Swift already holds data for image {image_id}")

    def _put_single(self, conn: Any, container: str, image_id: str,
                    reader: Incoming, written: list[str]) -> None:
        written.append(image_id)
        # Chunked transfer: the size given to add() is only a hint.
        etag = conn.put_object(container, image_id, reader, chunk_size=WRITE_SIZE)
        if etag and etag.strip('"') != reader.checksum:
            raise exception.StoreError(
                f"Swift stored image {image_id} with a different checksum")

    def _put_segmented(self, conn: Any, container: str, image_id: str,
                       reader: Incoming, written: list[str]) -> None:
        if reader.at_end():
            self._put_single(conn, container, image_id, reader, written)
            return
        number = 0
        while number == 0 or not reader.at_end():
            number += 1
            name = "%s-%05d" % (image_id, number)
            written.append(name)
            conn.put_object(container, name, reader.window(self.segment_size),
                            chunk_size=WRITE_SIZE)
        written.append(image_id)
        manifest = f"{quote(container, safe='')}/{quote(image_id, safe='')}-"
        conn.put_object(container, image_id, None, headers={"X-Object-Manifest": manifest})

    def remove_leftovers(self, image_id: str, keep: Iterable[str] = ()) -> None:
        """Remove the object ``<image_id>`` and its segments
        (``<image_id>-NNNNN``) a dead writer left, unless a location in
        ``keep`` names the object."""
        creds, container = self.credentials, self.container
        if location_url(creds, container, image_id) in keep:
            return
        conn = self._connect(creds)
        try:
            _, listing = conn.get_container(container, prefix=image_id, full_listing=True)
        except Exception as err:
            conn.close()
            if _status(err) == 404:
                return
            raise _read_error(err) from err
        conn.close()
        names = [e["name"] for e in listing if e["name"] == image_id
                 or SEGMENT_NAME.fullmatch(e["name"][len(image_id):])]
        # The manifest last in the list: _remove_quietly deletes it first.
        names.sort(key=lambda name: name == image_id)
        if names:
            LOG.info("Removing %d Swift object(s) of image %s left by a write that "
                     "did not finish", len(names), image_id)
        self._remove_quietly(creds, container, names)

    def _remove_quietly(self, creds: Credentials, container: str, names: list[str]) -> None:
        """Delete what a failed upload wrote, manifest first; log what remains."""
        if not names:
            return
        conn = self._connect(creds)
        try:
            for name in reversed(names):
                try:
                    conn.delete_object(container, name)
                except Exception as err:
                    if _status(err) != 404:
                        LOG.error("Could not remove Swift object %s/%s of a failed "
                                  "upload: %s", container, name, err)
        finally:
            conn.close()

    # --- get ----------------------------------------------------------------
    def get(self, url: str) -> tuple[ReadStream, int | None]:
        """Stream the object; raises BadStoreUri, NotFound,
        RemoteServiceUnavailable, StoreError. The iterator raises
        RemoteDataIncomplete (502) if the download is cut off."""
        return self._download(url, {})

    def get_range(self, url: str, offset: int, length: int) -> ReadStream:
        """``length`` bytes from ``offset``, asked of Swift as a Range."""
        return self._download(url, {"Range": "bytes=%d-%d" % (offset, offset + length - 1)})[0]

    def _download(self, url: str, request_headers: dict[str, str]
                  ) -> tuple[ReadStream, int | None]:
        loc = self._location(url)
        conn = self._connect(loc.credentials, retries=self.retry_get_count)
        try:
            headers, body = conn.get_object(loc.container, loc.obj,
                                            resp_chunk_size=CHUNK_SIZE,
                                            headers=request_headers)
        except Exception as err:
            conn.close()
            LOG.debug("Swift GET of %s/%s failed", loc.container, loc.obj)
            raise _read_error(err) from err
        self._remember(loc.credentials, conn)
        try:
            size: int | None = int(headers["content-length"])
        except (KeyError, ValueError):
            size = None

        def close() -> None:
            try:
                body.close()
            finally:
                conn.close()

        return remote_download(body.read, close, size, "Swift",
                                f"{loc.container}/{loc.obj}", LOG), size

    def get_size(self, url: str) -> int:
        """Object size from a HEAD; raises BadStoreUri, NotFound,
        RemoteServiceUnavailable, StoreError."""
        loc = self._location(url)
        conn = self._connect(loc.credentials)
        try:
            headers = conn.head_object(loc.container, loc.obj)
            self._remember(loc.credentials, conn)
        except Exception as err:
            raise _read_error(err) from err
        finally:
            conn.close()
        try:
            return int(headers.get("content-length", 0))
        except ValueError:
            return 0

    # --- delete -------------------------------------------------------------
    def delete(self, url: str) -> None:
        """Delete the object and, for a large object, its segments.

        Segments go first, so a failure leaves a manifest to retry with.
        Raises BadStoreUri, NotFound, RemoteServiceUnavailable, StoreError.
        """
        loc = self._location(url)
        conn = self._connect(loc.credentials)
        try:
            headers = conn.head_object(loc.container, loc.obj)
            if headers.get("x-static-large-object", "").lower() == "true":
                conn.delete_object(loc.container, loc.obj,
                                   query_string="multipart-manifest=delete")
            else:
                self._delete_segments(conn, loc, headers.get("x-object-manifest"))
                conn.delete_object(loc.container, loc.obj)
            self._remember(loc.credentials, conn)
        except exception.GlanceError:
            raise
        except Exception as err:
            raise _read_error(err) from err
        finally:
            conn.close()
        LOG.debug("Deleted Swift object %s/%s", loc.container, loc.obj)

    def _delete_segments(self, conn: Any, loc: Location, manifest: str | None) -> None:
        if not manifest:
            return
        container, _, prefix = unquote(manifest).partition("/")
        # Only segments named after this object: a manifest pointing at a
        # whole container (or someone else's prefix) must not empty it.
        if not prefix.startswith(loc.obj):
            LOG.warning("Not deleting segments %s of Swift object %s/%s: not named "
                        "after it", manifest, loc.container, loc.obj)
            return
        _, listing = conn.get_container(container, prefix=prefix, full_listing=True)
        for entry in listing:
            try:
                conn.delete_object(container, entry["name"])
            except swift_client.ClientException as err:
                if _status(err) != 404:
                    raise
