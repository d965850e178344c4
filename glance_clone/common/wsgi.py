"""WSGI building blocks shared by glance-api and glance-registry.

- ``Middleware``: a paste filter with ``process_request`` / ``process_response``.
- ``Router``: dispatches on a ``routes.Mapper``; unmatched paths get 404, or
  501 for methods no route knows at all. ``connect_methods`` answers every
  other method on a routed path, unknown ones included, with 405 and Allow.
- ``Resource``: runs deserializer, controller action and serializer by action
  name and turns our exceptions into HTTP errors through ``faults``. A
  streamed answer's first chunk is read before the status is sent, so a
  source that fails at once gets its mapped status, not a 500.
- JSON request bodies (``read_json_body``, ``parse_json``): only POST, PUT
  and PATCH have one (a body on GET or DELETE is ignored); one larger than
  ``max_json_body_size`` gets 413 before it is read; nesting deeper than
  ``MAX_JSON_DEPTH`` is malformed (400).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import routes.middleware
import webob
import webob.exc

from glance_clone.common import data_out, exception, faults

LOG = logging.getLogger(__name__)

KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"))
# The only methods whose body an action reads: a body on GET, HEAD or
# DELETE has no defined meaning, so it is left unread.
BODY_METHODS = frozenset(("POST", "PUT", "PATCH"))

# The environ key through which RequestGuard hands over max_json_body_size;
# in-process apps without the guard get the option's default.
JSON_BODY_LIMIT = "glance.json_body_limit"
DEFAULT_JSON_BODY_LIMIT = 1048576
# Deeper JSON is refused: the parsers and encoders on the way (ours, the
# registry's) recurse, and no document of either API nests beyond a few levels.
MAX_JSON_DEPTH = 32
READ_SIZE = 65536


class Request(webob.Request):
    """A webob request that carries our ``RequestContext``."""

    @property
    def context(self) -> Any:
        return self.environ.get("glance.context")

    @context.setter
    def context(self, value: Any) -> None:
        self.environ["glance.context"] = value


class Middleware:
    """Base for paste filters; subclasses override the two hooks.

    A plain WSGI callable rather than a ``webob.dec.wsgify`` one: every
    request crosses several filters, and a filter that has no
    ``process_response`` hands the app's answer through untouched instead
    of wrapping it in a response object.
    """

    def __init__(self, application: Callable) -> None:
        self.application = application

    @classmethod
    def factory(cls, global_conf: dict, **local_conf: str) -> Callable:
        def filter_(app: Callable) -> Middleware:
            return cls(app)
        return filter_

    def process_request(self, req: Request) -> webob.Response | None:
        """Return a response to answer at once, or None to go on."""
        return None

    def process_response(self, response: webob.Response) -> webob.Response:
        return response

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        req = Request(environ)
        try:
            response = self.process_request(req)
        except exception.GlanceError as err:
            response = faults.to_http(err) or faults.http_error(webob.exc.HTTPInternalServerError)
        except webob.exc.HTTPException as err:
            response = err
        if response is not None:
            return response(environ, start_response)
        if type(self).process_response is Middleware.process_response:
            return self.application(environ, start_response)
        response = req.get_response(self.application)
        response.request = req
        return self.process_response(response)(environ, start_response)


def reject_method(allow: str, explanation: str | None = None) -> Callable:
    """A WSGI app answering 405 with ``Allow`` (none when empty)."""
    def app(environ: dict, start_response: Callable) -> Any:
        kwargs: dict[str, Any] = {"headers": [("Allow", allow)] if allow else []}
        if explanation:
            kwargs["explanation"] = explanation
        return faults.http_error(webob.exc.HTTPMethodNotAllowed, **kwargs)(
            environ, start_response)
    return app


class Router:
    """Routes a request to the WSGI app named ``controller`` in the match."""

    def __init__(self, mapper: routes.Mapper) -> None:
        self.map = mapper
        # No method override: routes would otherwise take "?_method=DELETE"
        # on a GET as a DELETE, and read a whole form-encoded POST body into
        # memory looking for "_method" before any check ran.
        self._router = routes.middleware.RoutesMiddleware(
            self._dispatch, self.map, use_method_override=False)

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        return self._router(environ, start_response)

    @staticmethod
    def _dispatch(environ: dict, start_response: Callable) -> Any:
        match = environ["wsgiorg.routing_args"][1]
        if match:
            return match["controller"](environ, start_response)
        if environ["REQUEST_METHOD"] not in KNOWN_METHODS:
            return faults.http_error(webob.exc.HTTPNotImplemented)(environ, start_response)
        return faults.http_error(webob.exc.HTTPNotFound)(environ, start_response)


def connect_methods(mapper: routes.Mapper, path: str, resource: Any,
                    actions: dict[str, str], reject_others: bool = True,
                    allow: str | None = None,
                    requirements: dict[str, str] | None = None) -> None:
    """Connect ``{METHOD: action}`` for ``path``; with ``reject_others``
    every other method (OPTIONS, TRACE, "get"...) gets 405 with ``Allow``
    (``allow``, else the methods connected here)."""
    extra = {"requirements": requirements} if requirements else {}
    for method, action in actions.items():
        mapper.connect(path, controller=resource, action=action,
                       conditions={"method": [method]}, **extra)
    if reject_others:
        allow_value = allow if allow is not None else ", ".join(actions)
        # No method condition: this route takes whatever the ones above
        # did not, so a routed path never answers 501.
        mapper.connect(path, controller=reject_method(allow_value), **extra)


class JSONSerializer:
    """Turns an action's dict into a JSON response."""

    def dispatch(self, result: Any, action: str, req: Request) -> webob.Response:
        if isinstance(result, webob.Response):
            return result
        response = webob.Response(request=req)
        method = getattr(self, action, None)
        if method is not None:
            method(response, result)
            return response
        response.content_type = "application/json"
        response.charset = None
        response.body = json.dumps(result).encode("utf-8")
        return response


class JSONDeserializer:
    """Reads a JSON body into the ``body`` argument of an action.

    Per-action methods that read a body should use ``read_json_body`` and
    ``parse_json``, which hold the rules of the module docstring.
    """

    def dispatch(self, req: Request, action: str) -> dict[str, Any]:
        method = getattr(self, action, None)
        if method is not None:
            return method(req)
        raw = read_json_body(req)
        if not raw:
            return {}
        return {"body": parse_json(raw)}


class StreamingDeserializer:
    """Leaves the body in ``wsgi.input`` for the action to stream."""

    def dispatch(self, req: Request, action: str) -> dict[str, Any]:
        return {}


def read_json_body(req: Request) -> bytes | None:
    """The body of a POST, PUT or PATCH; None for other methods or no body.

    Raises RequestBodyTooLarge, before reading anything when Content-Length
    says so and after at most one byte too many of a chunked body, and
    ClientDisconnected when the body ends before its Content-Length.
    """
    if req.method not in BODY_METHODS:
        return None
    limit: int = req.environ.get(JSON_BODY_LIMIT, DEFAULT_JSON_BODY_LIMIT)
    length = req.content_length
    if length is not None and length > limit:
        raise exception.RequestBodyTooLarge(limit=limit)
    chunked = "chunked" in req.headers.get("Transfer-Encoding", "").lower()
    if not length and not chunked:
        return None
    stream = req.environ["wsgi.input"]
    wanted = length if length else limit + 1
    parts: list[bytes] = []
    received = 0
    while received < wanted:
        try:
            part = stream.read(min(READ_SIZE, wanted - received))
        except (OSError, ValueError):
            raise exception.ClientDisconnected() from None
        if not part:
            break
        parts.append(part)
        received += len(part)
    if received > limit:
        raise exception.RequestBodyTooLarge(limit=limit)
    if length and received < length:
        raise exception.ClientDisconnected()
    return b"".join(parts)


def parse_json(raw: bytes | str, what: str = "request body") -> Any:
    """Decode the JSON of ``what``; raises MalformedJSON, also for nesting
    deeper than ``MAX_JSON_DEPTH`` and for text UTF-8 cannot carry."""
    too_deep = exception.MalformedJSON(
        "Malformed JSON in %s: nested deeper than %d levels" % (what, MAX_JSON_DEPTH))
    try:
        value = json.loads(raw)
    except RecursionError:
        raise too_deep from None
    except (ValueError, UnicodeDecodeError) as err:
        raise exception.MalformedJSON("Malformed JSON in %s: %s" % (what, err))
    problem = _tree_problem(value, MAX_JSON_DEPTH)
    if problem == TOO_DEEP:
        raise too_deep
    if problem == HALF_SURROGATE:
        # JSON may escape half of a UTF-16 pair (\ud800); no UTF-8 text
        # holds one, so every later use of it (a URL, the database) fails.
        raise exception.MalformedJSON("Malformed JSON in %s: a \\u escape is not "
                                      "valid UTF-8 text (unpaired surrogate)" % what)
    return value


TOO_DEEP = "too deep"
HALF_SURROGATE = "half surrogate"


def _tree_problem(value: Any, limit: int) -> str | None:
    """One walk of decoded JSON (no recursion): TOO_DEEP if objects and
    arrays nest more than ``limit`` levels, HALF_SURROGATE if a string or
    object key is not encodable as UTF-8, else None."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            texts: Any = (item,)
            children: Any = ()
        elif isinstance(item, dict):
            texts, children = item.keys(), item.values()
        elif isinstance(item, list):
            texts, children = (), item
        else:
            continue
        if not isinstance(item, str) and depth > limit:
            return TOO_DEEP
        for text in texts:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return HALF_SURROGATE
        pending.extend((child, depth + 1) for child in children)
    return None


class _StartedBody:
    """A streamed body whose first chunk was already read (see Resource)."""

    def __init__(self, first: bytes | None, rest: Iterator[bytes], source: Any) -> None:
        self._first = first
        self._rest = rest
        self._source = source

    def __iter__(self) -> Iterator[bytes]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        yield from self._rest

    def allow_regions(self) -> bool:
        """The rest of the body may pass file regions if its source can."""
        return data_out.allow_regions(self._source)

    def close(self) -> None:
        close = getattr(self._source, "close", None)
        if close is not None:
            close()


def start_body(req: Request, response: Any) -> Any:
    """Read the first chunk of ``response``'s streamed body now.

    Once the status line is out, a failing source can only cut the
    connection; read here, its error still becomes the mapped status (a
    remote that sends nothing of what it announced: 502). Raises what the
    body's iterator raises, after closing it.
    """
    app_iter = getattr(response, "app_iter", None)
    if req.method == "HEAD" or app_iter is None or isinstance(app_iter, (list, tuple)):
        return response
    rest = iter(app_iter)
    try:
        first: bytes | None = next(rest)
    except StopIteration:
        first = None
    except BaseException:
        close = getattr(app_iter, "close", None)
        if close is not None:
            close()
        raise
    length = response.content_length
    response.app_iter = _StartedBody(first, rest, app_iter)
    response.content_length = length  # webob drops it with a new app_iter
    return response


class Resource:
    """The WSGI app behind one controller."""

    def __init__(self, controller: Any, deserializer: Any = None,
                 serializer: Any = None) -> None:
        self.controller = controller
        self.deserializer = deserializer or JSONDeserializer()
        self.serializer = serializer or JSONSerializer()

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        return self.respond(Request(environ))(environ, start_response)

    def respond(self, req: Request) -> Any:
        """The routed action's response (any WSGI app)."""
        args = dict(req.environ["wsgiorg.routing_args"][1])
        action = args.pop("action")
        args.pop("controller", None)
        args.pop("format", None)
        try:
            args.update(self.deserializer.dispatch(req, action))
            result = getattr(self.controller, action)(req, **args)
            return start_body(req, self.serializer.dispatch(result, action, req))
        except exception.GlanceError as err:
            response = faults.to_http(err)
            if response is None:
                LOG.exception("Unmapped error in %s", action)
                return faults.http_error(webob.exc.HTTPInternalServerError)
            LOG.debug("%s -> %s: %s", action, response.status, err)
            return response
        except webob.exc.HTTPException as err:
            return err
        except Exception:
            LOG.exception("Unexpected error in %s", action)
            return faults.http_error(webob.exc.HTTPInternalServerError)
