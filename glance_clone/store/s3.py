"""S3 store: image data as objects in one bucket of an S3 service (boto3).

Options (section ``[glance_store]``, Glance's names):

``s3_store_host``
    Endpoint, ``host[:port]`` or a URL; ``https://...`` selects TLS, anything
    else plain http. Required.
``s3_store_access_key`` / ``s3_store_secret_key``
    Credentials (signature v4). Required; the secret key is a secret.
``s3_store_bucket``
    Bucket holding the images (a DNS-compliant name). Required.
``s3_store_create_bucket_on_put`` (default False)
    Create the bucket on the first upload; otherwise an upload to a missing
    bucket fails with a message saying so.
``s3_store_bucket_url_format`` (default ``auto``)
    ``path`` (``host/bucket/key``), ``virtual`` (``bucket.host/key``; Glance's
    old ``subdomain`` is accepted for it) or ``auto`` (path style for an IP
    address endpoint, virtual otherwise).
``s3_store_large_object_size`` (MB, default 100) /
``s3_store_large_object_chunk_size`` (MB, default 10, at least 5)
    Images larger than the first, and images of unknown size, go up as a
    multipart upload in parts of the second (larger for very large known
    sizes, to stay within ``MAX_PARTS``); smaller ones in one streamed PUT.
``s3_store_thread_pools`` (default 10)
    Size of the HTTP connection pool. Parts are uploaded one at a time so
    that an upload never holds more than one part in memory.
``s3_store_region`` (default ``us-east-1``)
    Region the signatures are made for.

Locations are Glance's ``s3://<access key>:<secret key>@<host>/<bucket>/<image_id>``
(``s3+https`` for a TLS endpoint), credentials URL-quoted. Reads and deletes
use the credentials in the location. A location is never shown to API
clients nor logged (log lines name the bucket and key); error messages
name the store, never the secret.

A failed upload leaves nothing: a single PUT that does not complete stores
nothing, and a multipart upload is aborted (its parts deleted) on any error,
including errors raised by the incoming chunks such as the size cap.
Downloads stream, and one cut off before ``Content-Length`` bytes raises.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from oslo_config import cfg

from glance_clone.common import exception
from glance_clone.common.data_in import Incoming
from glance_clone.store.base import AddResult, Driver, ReadStream, remote_download
from glance_clone.store.credentialed_uri import UriFormat, check_object_name

LOG = logging.getLogger(__name__)

GROUP = "glance_store"
MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB
# S3 allows 10,000 parts; Swift's s3api 1,000 by default. Known sizes get
# parts large enough to stay under the smaller limit.
MAX_PARTS = 1000
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 120.0
# Attempts for requests whose body can be sent again (not streamed ones).
ATTEMPTS = 3
NOT_FOUND_MESSAGE = "S3 could not find the image data."
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_URL_FORMATS = {"auto": "auto", "path": "path", "virtual": "virtual", "subdomain": "virtual"}

OPTS = [
    cfg.StrOpt("s3_store_host",
               help="S3 endpoint: host[:port] (http) or an http(s):// URL."),
    cfg.StrOpt("s3_store_access_key", help="S3 access key."),
    cfg.StrOpt("s3_store_secret_key", secret=True, help="S3 secret key."),
    cfg.StrOpt("s3_store_bucket", help="Bucket the S3 store keeps images in."),
    cfg.BoolOpt("s3_store_create_bucket_on_put", default=False,
                help="Create the bucket on upload when it is missing."),
    cfg.StrOpt("s3_store_bucket_url_format", default="auto",
               choices=sorted(_URL_FORMATS),
               help="Addressing: path, virtual (subdomain) or auto."),
    cfg.IntOpt("s3_store_large_object_size", default=100, min=1,
               help="Images larger than this many MB use a multipart upload."),
    cfg.IntOpt("s3_store_large_object_chunk_size", default=10, min=5,
               help="Size in MB of the parts of a multipart upload (at least 5)."),
    cfg.IntOpt("s3_store_thread_pools", default=10, min=1,
               help="HTTP connections the S3 store may keep open."),
    cfg.StrOpt("s3_store_region", default="us-east-1",
               help="Region S3 requests are signed for."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the S3 store options in ``[glance_store]``."""
    conf.register_opts(OPTS, group=GROUP)


# --- locations ---------------------------------------------------------------
@dataclass(frozen=True)
class Credentials:
    """An endpoint and the keys to sign with (the repr never shows the secret)."""

    endpoint: str
    access_key: str
    secret_key: str = field(default="", repr=False)


@dataclass(frozen=True)
class Location:
    """A parsed S3 location."""

    credentials: Credentials
    bucket: str
    key: str


URI = UriFormat(store="S3", a_store="an S3",
                prefixes={"http": "s3", "https": "s3+https"}, default="http",
                credentials="access:secret", missing="access:secret",
                path="a host, a bucket and a key")


def location_url(creds: Credentials, bucket: str, key: str) -> str:
    """Glance's location URI for an object (it contains the secret)."""
    return URI.format(creds.endpoint, creds.access_key, creds.secret_key, bucket, key)


def parse_location(url: str, schemes: Iterable[str]) -> Location:
    """Split an S3 location; raises BadStoreUri (whose message has no secret)."""
    creds, bucket, key = URI.parse(url, schemes)
    return Location(Credentials(*creds), bucket, key)


# --- errors ------------------------------------------------------------------
def _code_and_status(err: BaseException) -> tuple[str, int | None]:
    response = getattr(err, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code, status


_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
           "AuthorizationHeaderMalformed", "InvalidToken", "ExpiredToken"}
_FULL = {"EntityTooLarge", "QuotaExceeded", "InsufficientStorage"}
_NOT_FOUND = {"NoSuchKey", "NotFound", "404"}


def _write_error(err: Exception, bucket: str) -> exception.GlanceError:
    """Our exception for a failed upload step (the message names no secret)."""
    code, status = _code_and_status(err)
    LOG.error("S3 store write failed: %s", err)
    if code in _DENIED or status in (401, 403):
        return exception.StorageWriteDenied(
            f"S3 store denied access to bucket {bucket} ({code or status}): check "
            "s3_store_access_key and s3_store_secret_key.")
    if code in _FULL or status in (413, 507):
        return exception.StorageFull(f"S3 store is full or over quota ({code or status}).")
    if code == "NoSuchBucket":
        return exception.StoreError(f"S3 bucket {bucket} disappeared during the upload.")
    if status is None or status >= 500 or code == "SlowDown":
        return exception.ServiceUnavailable("S3 store is unavailable; try again later.")
    return exception.StoreError(f"S3 store refused the upload ({code or status}).")


def _read_error(err: Exception) -> exception.GlanceError:
    """Our exception for a failed get/HEAD/delete."""
    code, status = _code_and_status(err)
    if code in _NOT_FOUND or status == 404:
        return exception.NotFound(NOT_FOUND_MESSAGE)
    LOG.error("S3 store request failed: %s", err)
    if code in _DENIED or status in (401, 403):
        return exception.StoreError(
            f"S3 store refused the credentials of the image location ({code or status}).")
    if status is None or status >= 500 or code == "SlowDown":
        return exception.RemoteServiceUnavailable("S3 store is unavailable.")
    return exception.StoreError(f"S3 store request failed ({code or status}).")


class S3Driver(Driver):
    """Stores images as objects in one S3 bucket."""

    schemes = ("s3", "s3+http", "s3+https")

    @classmethod
    def register_opts(cls, conf: cfg.ConfigOpts) -> None:
        register_opts(conf)

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        super().__init__(conf)
        # Imported here, not at module level: boto3 takes most of a second
        # to load, which every process would pay even with S3 disabled.
        try:
            import boto3
            import botocore.config
            import botocore.exceptions
        except ImportError as err:
            raise exception.MissingDependency(
                feature="The s3 store", package="boto3", extra="s3") from err
        self._config_cls = botocore.config.Config
        self._client_error: type[Exception] = botocore.exceptions.ClientError
        self._errors: tuple[type[Exception], ...] = (
            botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError)
        self._setup_errors = (*self._errors, ValueError)
        opts = conf[GROUP]
        missing = [name for name in ("s3_store_host", "s3_store_access_key",
                                     "s3_store_secret_key", "s3_store_bucket")
                   if not opts[name]]
        if missing:
            raise exception.ConfigError(
                f"{', '.join(missing)} must be set when the s3 store is enabled")
        self.bucket = opts.s3_store_bucket
        if not _BUCKET_NAME.match(self.bucket) or ".." in self.bucket:
            raise exception.ConfigError(
                f"s3_store_bucket {self.bucket!r} is not a DNS-compliant bucket name")
        host = opts.s3_store_host.strip().rstrip("/")
        if "://" not in host:
            host = "http://" + host
        if not host.startswith(("http://", "https://")):
            raise exception.ConfigError(f"s3_store_host {host!r} is not an http(s) endpoint")
        self.credentials = Credentials(host, opts.s3_store_access_key,
                                       opts.s3_store_secret_key)
        self.create_bucket = opts.s3_store_create_bucket_on_put
        self.large_object_size = opts.s3_store_large_object_size * MiB
        self.part_size = max(opts.s3_store_large_object_chunk_size * MiB, MIN_PART_SIZE)
        self.region = opts.s3_store_region
        self.addressing = _URL_FORMATS[opts.s3_store_bucket_url_format]
        self.pool_size = opts.s3_store_thread_pools
        self._session = boto3.session.Session()
        self._lock = threading.Lock()
        # (credentials, streaming) -> client; boto3 clients are thread-safe.
        self._clients: dict[tuple[Credentials, bool], Any] = {}
        self._client(self.credentials)  # bad settings fail at startup

    # --- clients ------------------------------------------------------------
    def _client(self, creds: Credentials, streaming: bool = False) -> Any:
        """A boto3 client for ``creds``.

        The ``streaming`` one never retries: a retried PUT cannot rewind the
        incoming image and would send the rest of it as a corrupt object.
        """
        key = (creds, streaming)
        client = self._clients.get(key)
        if client is not None:
            return client
        addressing = self.addressing
        if addressing == "auto":
            # botocore's auto picks virtual hosts for names like localhost,
            # which rarely resolve; an IP address can only be path style.
            host = creds.endpoint.partition("://")[2].rsplit(":", 1)[0].strip("[]")
            try:
                ipaddress.ip_address(host)
                addressing = "path"
            except ValueError:
                pass
        config = self._config_cls(
            signature_version="s3v4",
            s3={"addressing_style": addressing,
                # The body is streamed once; signing it would read it twice.
                "payload_signing_enabled": False},
            # Streamed aws-chunked uploads with trailing checksums are not in
            # every S3 implementation (Swift's s3api); md5 is computed here.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"total_max_attempts": 1 if streaming else ATTEMPTS,
                     "mode": "standard"},
            connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
            max_pool_connections=self.pool_size)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                try:
                    client = self._session.client(
                        "s3", endpoint_url=creds.endpoint, region_name=self.region,
                        aws_access_key_id=creds.access_key,
                        aws_secret_access_key=creds.secret_key, config=config)
                except self._setup_errors as err:
                    if creds == self.credentials:
                        raise exception.ConfigError(f"S3 store settings are invalid: {err}")
                    raise exception.BadStoreUri("S3 location names an invalid endpoint.")
                if len(self._clients) > 32:
                    self._clients.clear()  # locations with many credentials
                self._clients[key] = client
        return client

    def _location(self, url: str) -> Location:
        return parse_location(url, self.schemes)

    # --- add ----------------------------------------------------------------
    def add(self, image_id: str, chunks: Iterable[bytes], size: int) -> AddResult:
        """Upload ``chunks`` as ``<bucket>/<image_id>``.

        Raises Invalid, Duplicate, StorageFull, StorageWriteDenied (bad
        credentials), ServiceUnavailable, StoreError (missing bucket),
        ImageDataMismatch (fewer bytes than ``size`` announced), and
        re-raises what ``chunks`` raises; nothing is left on failure.
        """
        check_object_name(image_id)
        creds, bucket = self.credentials, self.bucket
        client = self._client(creds)
        reader = Incoming.wrap(chunks)
        try:
            self._prepare(client, bucket, image_id)
            if 0 < size <= self.large_object_size:
                self._put_streamed(bucket, image_id, reader, size)
            else:
                self._put_parts(client, bucket, image_id, reader, size)
        except BaseException as err:
            reader.reraise(err, lambda error: _write_error(error, bucket))
        LOG.debug("Wrote %d bytes of image %s to S3 bucket %s",
                  reader.bytes_read, image_id, bucket)
        return (location_url(creds, bucket, image_id), reader.bytes_read,
                reader.checksum, {})

    def _prepare(self, client: Any, bucket: str, image_id: str) -> None:
        """Make sure the bucket exists and the object does not."""
        try:
            client.head_bucket(Bucket=bucket)
        except self._client_error as err:
            code, status = _code_and_status(err)
            if status != 404 and code not in ("404", "NoSuchBucket"):
                raise
            if not self.create_bucket:
                raise exception.StoreError(
                    f"S3 bucket {bucket} does not exist; create it or set "
                    "s3_store_create_bucket_on_put.") from err
            LOG.info("Creating S3 bucket %s", bucket)
            kwargs: dict[str, Any] = {"Bucket": bucket}
            if self.region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
            try:
                client.create_bucket(**kwargs)
            except self._client_error as create_err:
                if _code_and_status(create_err)[0] != "BucketAlreadyOwnedByYou":
                    raise
        try:
            client.head_object(Bucket=bucket, Key=image_id)
        except self._client_error as err:
            code, status = _code_and_status(err)
            if status != 404 and code not in _NOT_FOUND:
                raise
        else:
            raise exception.Duplicate(f"S3 already holds data for image {image_id}")

    def _put_streamed(self, bucket: str, image_id: str, reader: Incoming,
                      size: int) -> None:
        """One PUT of exactly ``size`` bytes read straight from the chunks."""
        client = self._client(self.credentials, streaming=True)
        response = client.put_object(Bucket=bucket, Key=image_id,
                                     Body=reader.window(size, exact=True),
                                     ContentLength=size)
        self._check_stored(client, bucket, image_id, response, reader, size)

    def _check_stored(self, client: Any, bucket: str, image_id: str,
                      response: dict[str, Any], reader: Incoming,
                      size: int | None) -> None:
        """Delete the object just written if it is not all of the image."""
        try:
            if size is not None and not reader.at_end():
                # More data than announced: the stored object is a prefix.
                raise exception.ImageDataMismatch(
                    "Image data is longer than the %d bytes declared" % size)
            etag = str(response.get("ETag", "")).strip('"')
            if etag and "-" not in etag and etag != reader.checksum:
                raise exception.StoreError(
                    f"S3 stored image {image_id} with a different checksum")
        except BaseException:
            self._delete_quietly(client, bucket, image_id)
            raise

    def _put_parts(self, client: Any, bucket: str, image_id: str,
                   reader: Incoming, size: int) -> None:
        """Multipart upload, one buffered part at a time; aborted on failure."""
        part_size = self.part_size
        if size > 0:
            part_size = max(part_size, math.ceil(size / MAX_PARTS))
        part = reader.read_block(part_size)
        if reader.at_end():
            # It all fitted in one part: a plain PUT is cheaper and leaves an
            # object whose ETag is its md5.
            response = client.put_object(Bucket=bucket, Key=image_id, Body=part)
            self._check_stored(client, bucket, image_id, response, reader, None)
            return
        upload_id = client.create_multipart_upload(Bucket=bucket, Key=image_id)["UploadId"]
        completing = False
        try:
            parts = []
            number = 0
            while part:
                number += 1
                response = client.upload_part(Bucket=bucket, Key=image_id,
                                              UploadId=upload_id, PartNumber=number,
                                              Body=part)
                parts.append({"PartNumber": number, "ETag": response["ETag"]})
                del part  # free it before the next one fills: one part in memory
                part = reader.read_block(part_size)
            completing = True
            client.complete_multipart_upload(Bucket=bucket, Key=image_id,
                                             UploadId=upload_id,
                                             MultipartUpload={"Parts": parts})
        except BaseException:
            try:
                client.abort_multipart_upload(Bucket=bucket, Key=image_id,
                                              UploadId=upload_id)
            except Exception as err:
                LOG.error("Could not abort the multipart upload of image %s to S3 "
                          "bucket %s: %s", image_id, bucket, err)
            if completing:
                # The completion may have happened with only its answer lost.
                self._delete_quietly(client, bucket, image_id)
            raise

    def remove_leftovers(self, image_id: str, keep: Iterable[str] = ()) -> None:
        """Abort the multipart uploads of ``<image_id>`` a dead writer left
        (their parts go with them), and remove the object unless a location
        in ``keep`` names it."""
        creds, bucket = self.credentials, self.bucket
        client = self._client(creds)
        try:
            found = client.list_multipart_uploads(Bucket=bucket, Prefix=image_id)
            for upload in found.get("Uploads", []):
                if upload["Key"] == image_id:
                    client.abort_multipart_upload(Bucket=bucket, Key=image_id,
                                                  UploadId=upload["UploadId"])
                    LOG.info("Aborted a multipart upload of image %s left by a "
                             "write that did not finish", image_id)
        except self._client_error as err:
            code, status = _code_and_status(err)
            if status != 404 and code not in _NOT_FOUND:
                raise _read_error(err) from err
            return
        if location_url(creds, bucket, image_id) not in keep:
            self._delete_quietly(client, bucket, image_id)

    def _delete_quietly(self, client: Any, bucket: str, key: str) -> None:
        try:
            client.delete_object(Bucket=bucket, Key=key)
        except Exception as err:
            LOG.error("Could not remove S3 object %s/%s of a failed upload: %s",
                      bucket, key, err)

    # --- get ----------------------------------------------------------------
    def get(self, url: str) -> tuple[ReadStream, int | None]:
        """Stream the object; raises BadStoreUri, NotFound,
        RemoteServiceUnavailable, StoreError. The iterator raises
        RemoteDataIncomplete (502) if the download is cut off."""
        return self._download(url)

    def get_range(self, url: str, offset: int, length: int) -> ReadStream:
        """``length`` bytes from ``offset``, asked of S3 as a Range."""
        return self._download(url, Range="bytes=%d-%d" % (offset, offset + length - 1))[0]

    def _download(self, url: str, **request: str) -> tuple[ReadStream, int | None]:
        loc = self._location(url)
        try:
            response = self._client(loc.credentials).get_object(Bucket=loc.bucket,
                                                                Key=loc.key, **request)
        except self._errors as err:
            LOG.debug("S3 GET of %s/%s failed", loc.bucket, loc.key)
            raise _read_error(err) from err
        body = response["Body"]
        size: int | None = response.get("ContentLength")
        return remote_download(body.read, body.close, size, "S3",
                                f"{loc.bucket}/{loc.key}", LOG), size

    def get_size(self, url: str) -> int:
        """Object size from a HEAD; raises BadStoreUri, NotFound,
        RemoteServiceUnavailable, StoreError."""
        loc = self._location(url)
        try:
            response = self._client(loc.credentials).head_object(Bucket=loc.bucket,
                                                                 Key=loc.key)
        except self._errors as err:
            raise _read_error(err) from err
        return int(response.get("ContentLength") or 0)

    def delete(self, url: str) -> None:
        """Delete the object (S3 removes a multipart object's parts with it).

        Raises BadStoreUri, NotFound, RemoteServiceUnavailable, StoreError.
        """
        loc = self._location(url)
        client = self._client(loc.credentials)
        try:
            # DELETE succeeds on a missing key; the contract wants NotFound.
            client.head_object(Bucket=loc.bucket, Key=loc.key)
            client.delete_object(Bucket=loc.bucket, Key=loc.key)
        except self._errors as err:
            raise _read_error(err) from err
        LOG.debug("Deleted S3 object %s/%s", loc.bucket, loc.key)
