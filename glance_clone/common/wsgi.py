"""WSGI building blocks shared by glance-api and glance-registry.

- ``Middleware``: a paste filter with ``process_request`` / ``process_response``.
- ``Router``: dispatches on a ``routes.Mapper``; unmatched paths get 404, or
  501 for methods no route knows at all.
- ``Resource``: runs deserializer, controller action and serializer by action
  name and turns our exceptions into HTTP errors through ``faults``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import routes.middleware
import webob
import webob.exc

from glance_clone.common import exception, faults

LOG = logging.getLogger(__name__)

KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"))


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
            response = faults.to_http(err) or webob.exc.HTTPInternalServerError()
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
        return webob.exc.HTTPMethodNotAllowed(**kwargs)(environ, start_response)
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
            return webob.exc.HTTPNotImplemented()(environ, start_response)
        return webob.exc.HTTPNotFound()(environ, start_response)


def connect_methods(mapper: routes.Mapper, path: str, resource: Any,
                    actions: dict[str, str], reject_others: bool = True,
                    allow: str | None = None) -> None:
    """Connect ``{METHOD: action}`` for ``path``; other known methods get 405."""
    for method, action in actions.items():
        mapper.connect(path, controller=resource, action=action,
                       conditions={"method": [method]})
    if reject_others:
        others = sorted(KNOWN_METHODS - set(actions))
        allow_value = allow if allow is not None else ", ".join(actions)
        mapper.connect(path, controller=reject_method(allow_value),
                       conditions={"method": others})


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
    """Reads a JSON body into the ``body`` argument of an action."""

    def dispatch(self, req: Request, action: str) -> dict[str, Any]:
        method = getattr(self, action, None)
        if method is not None:
            return method(req)
        if not req.content_length:
            return {}
        return {"body": parse_json(req.body)}


class StreamingDeserializer:
    """Leaves the body in ``wsgi.input`` for the action to stream."""

    def dispatch(self, req: Request, action: str) -> dict[str, Any]:
        return {}


def parse_json(raw: bytes) -> Any:
    """Decode a JSON request body; raises MalformedJSON."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise exception.MalformedJSON("Malformed JSON in request body: %s" % err)


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
            return self.serializer.dispatch(result, action, req)
        except exception.GlanceError as err:
            response = faults.to_http(err)
            if response is None:
                LOG.exception("Unmapped error in %s", action)
                return webob.exc.HTTPInternalServerError()
            LOG.debug("%s -> %s: %s", action, response.status, err)
            return response
        except webob.exc.HTTPException as err:
            return err
        except Exception:
            LOG.exception("Unexpected error in %s", action)
            return webob.exc.HTTPInternalServerError()
