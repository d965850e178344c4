"""The one place where our exceptions become HTTP statuses.

``to_http`` is applied by ``wsgi.Resource``; the registry client applies the
inverse (``exception_for_status``) so that an error raised in the registry
surfaces in glance-api as the same exception class family.

Error bodies are webob's pages, in the form each API's clients know
(``ErrorPage``): v2 answers as today's Glance does, negotiating HTML, JSON
(``{"message", "code", "title"}``) or plain text from ``Accept``; v1
answers as Glance 11 did, HTML when ``Accept`` names ``html`` or ``*/*``
and plain text otherwise, never JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import webob.exc as exc

from glance_clone.common import exception

# Most specific classes first is not needed: the lookup walks the MRO.
FAULTS: dict[type[Exception], type[exc.HTTPException]] = {
    exception.Invalid: exc.HTTPBadRequest,
    exception.NotAuthenticated: exc.HTTPUnauthorized,
    exception.Forbidden: exc.HTTPForbidden,
    exception.NotFound: exc.HTTPNotFound,
    exception.MethodNotAllowed: exc.HTTPMethodNotAllowed,
    exception.Conflict: exc.HTTPConflict,
    exception.RangeNotSatisfiable: exc.HTTPRequestRangeNotSatisfiable,
    exception.StoreAddDisabled: exc.HTTPGone,
    exception.ImageDeletedDuringUpload: exc.HTTPPreconditionFailed,
    exception.ImageGoneDuringUpload: exc.HTTPGone,
    exception.LimitExceeded: exc.HTTPRequestEntityTooLarge,
    exception.UnsupportedMediaType: exc.HTTPUnsupportedMediaType,
    exception.RequestHeaderTooLarge: exc.HTTPRequestHeaderFieldsTooLarge,
    exception.RequestURITooLong: exc.HTTPRequestURITooLong,
    exception.ServiceUnavailable: exc.HTTPServiceUnavailable,
    exception.BadGateway: exc.HTTPBadGateway,
    exception.GatewayTimeout: exc.HTTPGatewayTimeout,
    exception.UnsupportedTransferCoding: exc.HTTPNotImplemented,
    exception.HttpVersionNotSupported: exc.HTTPVersionNotSupported,
    exception.StoreError: exc.HTTPInternalServerError,
    exception.ServerError: exc.HTTPInternalServerError,
}

# The registry's statuses back to exceptions (used by the registry client).
STATUS_EXCEPTIONS: dict[int, type[exception.GlanceError]] = {
    400: exception.Invalid,
    401: exception.NotAuthenticated,
    403: exception.Forbidden,
    404: exception.NotFound,
    405: exception.MethodNotAllowed,
    409: exception.Conflict,
    413: exception.LimitExceeded,
    503: exception.ServiceUnavailable,
}


# Set on the WSGI environ by the version negotiation filter: "v1" or "v2".
API_VERSION = "glance.api_version"
# Before that filter ran (the request guard's refusals), a v1 request is
# known by its first path segment.
V1_SEGMENTS = ("v1", "v1.0", "v1.1")


def _is_v1(environ: dict) -> bool:
    version = environ.get(API_VERSION)
    if version is not None:
        return bool(version == "v1")
    first = environ.get("PATH_INFO", "").lstrip("/").split("/", 1)[0]
    return first in V1_SEGMENTS


class ErrorPage(exc.WSGIHTTPException):
    """Mixed into webob's error classes: the body's media type as the
    request's API negotiates it (see the module docstring)."""

    def generate_response(self, environ: dict, start_response: Callable) -> Any:
        if _is_v1(environ):
            accept = environ.get("HTTP_ACCEPT", "")
            legacy = "text/html" if "html" in accept or "*/*" in accept else "text/plain"
            environ = dict(environ, HTTP_ACCEPT=legacy)
        return super().generate_response(environ, start_response)


_PAGES: dict[type[exc.HTTPException], type[exc.HTTPException]] = {}


def http_error(response_cls: type[exc.HTTPException], **kwargs: Any) -> exc.HTTPException:
    """An instance of webob's ``response_cls`` rendered as ``ErrorPage``
    says; every error answer of glance-api is made here."""
    page = _PAGES.get(response_cls)
    if page is None:
        page = _PAGES[response_cls] = type(response_cls.__name__,
                                           (ErrorPage, response_cls), {})
    return page(**kwargs)  # type: ignore[no-any-return]


# How long the staged data of an image is (resumable staging, ours).
STAGED_SIZE_HEADER = "OpenStack-image-staged-size"


def to_http(err: BaseException) -> exc.HTTPException | None:
    """The webob response for ``err``, or None when it is not one of ours."""
    cls = next((c for c in type(err).__mro__ if c in FAULTS), None)
    if cls is None:
        return None
    response_cls = FAULTS[cls]
    kwargs: dict[str, object] = {"explanation": str(err)}
    if response_cls is exc.HTTPMethodNotAllowed:
        allow = getattr(err, "allow", "")
        if allow:
            kwargs["headers"] = [("Allow", allow)]
    if isinstance(err, exception.RangeNotSatisfiable):
        kwargs["headers"] = [("Content-Range", "bytes */%d" % err.size)]
    if isinstance(err, exception.StagedLengthMismatch):
        kwargs["headers"] = [("Content-Range", "bytes */%d" % err.size),
                             (STAGED_SIZE_HEADER, str(err.size))]
    accept_patch = getattr(err, "accept_patch", "")
    if accept_patch:
        kwargs["headers"] = [("Accept-Patch", accept_patch)]
    response = http_error(response_cls, **kwargs)
    if response_cls in (exc.HTTPUnsupportedMediaType, exc.HTTPMethodNotAllowed):
        # webob's 415 and 405 pages show only the request's media type or
        # method; ours say why (a refused disk image names the failed
        # check, a refused task delete says how tasks do go away).
        response.body_template_obj = exc.WSGIHTTPException.body_template_obj
    return response


def exception_for_status(status: int, message: str) -> exception.GlanceError:
    """The exception a registry answer of ``status`` stands for."""
    if status == 409 and message.strip() == exception.StatusConflict.message:
        return exception.StatusConflict()
    cls = STATUS_EXCEPTIONS.get(status)
    if cls is None:
        return exception.ServerError(
            "Registry answered %s: %s" % (status, message) if message
            else "Registry answered %s" % status)
    return cls(message or None)


def explanation_from_body(body: str) -> str:
    """The message part of a webob error body ("<code> <reason>\\n\\n<text>")."""
    text = body.strip()
    head, sep, rest = text.partition("\n\n")
    if sep and head[:3].isdigit():
        text = rest.strip()
    return text
