"""The project's exceptions.

Domain, registry, store and database code raise these, never webob's HTTP
errors. ``glance_clone.common.faults`` maps them to HTTP statuses in one
table, and the registry client maps registry statuses back to them.
"""

from __future__ import annotations

import errno

from glance_clone.common.redaction import redact_url


class GlanceError(Exception):
    """Base class: carries a message that is safe to show to the caller."""

    message = "An unknown exception occurred"

    def __init__(self, message: str | None = None, **kwargs: object) -> None:
        if message is None:
            try:
                message = self.message % kwargs if kwargs else self.message
            except (KeyError, TypeError, ValueError):
                message = self.message
        self.msg = message
        super().__init__(message)

    def __str__(self) -> str:
        return self.msg


# --- 400 -----------------------------------------------------------------
class Invalid(GlanceError):
    message = "Data supplied was not valid."


class InvalidSortKey(Invalid):
    message = "Sort key supplied was not valid."


class InvalidSortDir(Invalid):
    message = "Sort direction supplied was not valid."


class InvalidFilterRangeValue(Invalid):
    message = "Unable to filter using the specified range."


class InvalidParameterValue(Invalid):
    message = "Invalid value for parameter."


class InvalidImageStatusTransition(Invalid):
    message = "Image status transition from %(cur_status)s to %(new_status)s is not allowed"


class InvalidContentType(Invalid):
    message = "Invalid content type %(content_type)s"


class MalformedJSON(Invalid):
    message = "Malformed JSON in request body."


class MalformedRequest(Invalid):
    """The request's framing (request line, headers, body encoding) is invalid."""

    message = "Malformed request: %(reason)s"


class UndecodableRequest(Invalid):
    message = "The request URL is not valid UTF-8 once percent-decoded."


class BadStoreUri(Invalid):
    message = "The store URI was malformed."


class UnknownScheme(Invalid):
    message = "Unknown scheme '%(scheme)s' found in URI"


class ExternalSourceRefused(Invalid):
    """Names the URL by scheme and host only: the caller's URL may hold a
    password or a signed query string, and the message reaches every
    tenant that can see the image."""

    message = "External sources are not supported: '%(url)s'"

    def __init__(self, message: str | None = None, *, url: str = "") -> None:
        super().__init__(message, url=redact_url(url))


class RedirectRefused(ExternalSourceRefused):
    """``url`` is the source that redirected; the target is never named."""

    message = "External sources are not supported: '%(url)s' redirects to a refused source"


class StoreGetNotSupported(Invalid):
    message = "Getting images from this store is not supported."


class ClientDisconnected(Invalid):
    message = "Client disconnected before sending all data to backend"


class ImageDataMismatch(Invalid):
    message = "Uploaded image data did not match what was declared."


class RangeNotSatisfiable(GlanceError):
    """A download range past the end of the image (416)."""

    message = "Requested range not satisfiable for an image of %(size)d bytes."

    def __init__(self, size: int) -> None:
        super().__init__(size=size)
        self.size = size


class StagedLengthMismatch(RangeNotSatisfiable):
    """A resumed stage that does not start where the staged data ends (416);
    ``size`` is the staged length, which the client continues from."""

    message = ("The staged data of this image is %(size)d bytes long: continue "
               "with Content-Range: bytes %(size)d-END/TOTAL.")


class ImageFormatRefused(Invalid):
    """Image data refused by disk-format inspection (v1: 400; v2: 415)."""

    message = "Image data refused: %(reason)s"


# --- 401 -----------------------------------------------------------------
class NotAuthenticated(GlanceError):
    message = "You are not authenticated."


# --- 403 -----------------------------------------------------------------
class Forbidden(GlanceError):
    message = "You are not authorized to complete this action."


class ReadOnly(Forbidden):
    message = "Read-only access"


class PolicyNotAuthorized(Forbidden):
    message = "Policy doesn't allow %(action)s to be performed."


class ProtectedImageDelete(Forbidden):
    message = "Image %(image_id)s is protected and cannot be deleted."


class ReservedProperty(Forbidden):
    message = "Property '%(property)s' is protected"


# --- 404 -----------------------------------------------------------------
class NotFound(GlanceError):
    message = "An object with the specified identifier was not found."


class ImageNotFound(NotFound):
    message = "Image not found"


class MemberNotFound(NotFound):
    message = "Membership could not be found."


class TaskNotFound(NotFound):
    message = "Task with the given id %(task_id)s was not found"


# --- 405 -----------------------------------------------------------------
class MethodNotAllowed(GlanceError):
    message = "Method not allowed"

    def __init__(self, message: str | None = None, allow: str = "") -> None:
        super().__init__(message)
        self.allow = allow


# --- 409 -----------------------------------------------------------------
class Conflict(GlanceError):
    message = "The request conflicts with the current state of the resource."


class Duplicate(Conflict):
    message = "An object with the same identifier already exists."


class StatusConflict(Conflict):
    """A compare-and-swap on the image status lost to another writer."""

    message = "Image operation conflicts"


class InUseByStore(Conflict):
    message = "The image cannot be deleted because it is in use through the backend store."


# --- 410, 412, 413 --------------------------------------------------------
class StoreAddDisabled(GlanceError):
    message = "Error in store configuration. Adding images to store is disabled."


class ImageDeletedDuringUpload(GlanceError):
    message = ("Image %(image_id)s could not be found after upload. "
               "The image may have been deleted during the upload.")


class ImageGoneDuringUpload(ImageDeletedDuringUpload):
    """The same, as v2 reports it: 410 where v1 answers 412."""


class LimitExceeded(GlanceError):
    message = "The request returned a 413 Request Entity Too Large."


class ProjectQuotaExceeded(LimitExceeded):
    """Over a Keystone unified limit (``use_keystone_limits``)."""

    message = ("Resource %(resource)s is over limit of %(limit)d for this project: "
               "%(usage)d in use, %(delta)d more requested.")


class ImageSizeLimitExceeded(LimitExceeded):
    message = "Denying attempt to upload image larger than %(limit)d bytes."


class StorageQuotaFull(LimitExceeded):
    message = "Denying attempt to upload image because it exceeds the quota: %(reason)s"


class StorageFull(LimitExceeded):
    message = "Image storage media is full"


class ImagePropertyLimitExceeded(LimitExceeded):
    message = ("The limit has been exceeded on the number of allowed image "
               "properties. Attempted: %(attempted)s, Maximum: %(maximum)s")


class ImageTagLimitExceeded(LimitExceeded):
    message = ("The limit has been exceeded on the number of allowed image "
               "tags. Attempted: %(attempted)s, Maximum: %(maximum)s")


class ImageLocationLimitExceeded(LimitExceeded):
    message = ("The limit has been exceeded on the number of allowed image "
               "locations. Attempted: %(attempted)s, Maximum: %(maximum)s")


class ImageMemberLimitExceeded(LimitExceeded):
    message = ("The limit has been exceeded on the number of allowed image "
               "members for this image. Attempted: %(attempted)s, Maximum: %(maximum)s")


class RequestBodyTooLarge(LimitExceeded):
    message = "The request body is larger than %(limit)d bytes (max_json_body_size)."


class UnsupportedMediaType(GlanceError):
    """415; ``accept_patch`` lists the media types a PATCH takes."""

    message = "The request body has an unsupported media type."

    def __init__(self, message: str | None = None, accept_patch: str = "") -> None:
        super().__init__(message)
        self.accept_patch = accept_patch


class RequestHeaderTooLarge(GlanceError):
    message = "Request header too large"


class RequestURITooLong(GlanceError):
    message = "Request line too long"


# --- 5xx ------------------------------------------------------------------
class ServiceUnavailable(GlanceError):
    message = "The service is temporarily unavailable."


class StorageWriteDenied(ServiceUnavailable):
    message = "Insufficient permissions on image storage media"


class RemoteServiceUnavailable(ServiceUnavailable):
    message = "Remote server where the image is present is unavailable."


class RegistryUnavailable(ServiceUnavailable):
    message = "The image registry could not be reached."


class RegistryReplyLost(RegistryUnavailable):
    """A write reached the registry (or may have) but its answer did not
    come back: whether it was committed is unknown until the record is
    read again."""

    message = "The image registry did not answer."


class IdentityUnavailable(ServiceUnavailable):
    message = ("The identity service (Keystone) could not be reached to "
               "validate the token; try again later.")


class DatabaseUnavailable(ServiceUnavailable):
    message = "The registry database is unavailable; try again later."


class BadGateway(GlanceError):
    """A remote server (image source, backend store) answered wrongly."""

    message = "The remote server sent an invalid response."


class RemoteDataIncomplete(BadGateway):
    message = "The remote server sent less image data than it announced."


class GatewayTimeout(GlanceError):
    message = "The remote server did not send the image data in time."


class UnsupportedTransferCoding(GlanceError):
    message = ("Transfer-Encoding %(coding)s is not supported; send the body "
               "with Content-Length or Transfer-Encoding: chunked")


class HttpVersionNotSupported(GlanceError):
    message = "Only HTTP/1.0 and HTTP/1.1 are supported"


class StoreError(GlanceError):
    """An unexpected store failure; shown as a 500 with a safe message."""

    message = "The image store failed."


class ServerError(GlanceError):
    message = "An internal server error occurred."


class InvalidTaskStatusTransition(ServerError):
    message = "Task status transition from %(cur_status)s to %(new_status)s is not allowed"


class ConfigError(GlanceError):
    message = "Invalid configuration."


class MissingDependency(ConfigError):
    """A configured feature needs a library that is not installed."""

    message = ("%(feature)s needs the Python package %(package)s: "
               "pip install 'glance_clone[%(extra)s]'")


class StoreConfigError(ConfigError):
    """Bad [glance_store] settings; glance-api exits with code 3."""

    message = "Invalid store configuration."


# Errors of writes to a local filesystem that are the filesystem refusing
# the data, not a fault: full (or over quota, or past the largest file)
# and not writable.
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
DENIED_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def write_refusal(err: OSError) -> GlanceError | None:
    """StorageFull (413) or StorageWriteDenied (503) for a local write the
    filesystem refused; None for any other error."""
    if err.errno in FULL_ERRNOS:
        return StorageFull()
    if err.errno in DENIED_ERRNOS:
        return StorageWriteDenied()
    return None
