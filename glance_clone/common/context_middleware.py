"""Paste filters that decide who the caller is.

- ``UnauthenticatedContextMiddleware`` (the default pipelines): every caller
  is an administrator with no user and no tenant. Only for a single trusted
  operator on a private network.
- ``ContextMiddleware`` (keystone and trusted-auth flavors): the identity
  comes from ``X-Identity-Status: Confirmed``, ``X-User-Id``,
  ``X-Tenant-Id``, ``X-Roles`` and ``X-Auth-Token``, as set by keystone's
  authtoken filter or by a trusted glance-api. Anyone who can reach a
  trusted-auth port can claim any identity: keep such ports private.

Both put a ``RequestContext`` on the request and echo its request id in
``x-openstack-request-id``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import webob
import webob.exc

from glance_clone.common import config, exception, faults, policy, wsgi
from glance_clone.common.context import RequestContext, new_request_id

REQUEST_ID_HEADER = "X-Openstack-Request-ID"
REQUEST_ID_RESPONSE_HEADER = "x-openstack-request-id"


def request_id_from(req: wsgi.Request, max_length: int) -> str:
    """The caller's request id, ``req-`` prefixed, or a new one.

    Raises Invalid when the prefixed id is longer than ``max_length``:
    Glance 11.0.2 mishandled an over-long id (a 500 later on), and the id
    is passed on to glance-registry, which applies the same limit.
    """
    supplied = req.headers.get(REQUEST_ID_HEADER)
    if not supplied:
        return new_request_id()
    request_id = supplied if supplied.startswith("req-") else "req-" + supplied
    if len(request_id) > max_length:
        raise exception.Invalid("%s is longer than %d characters (with its req- prefix)."
                                % (REQUEST_ID_HEADER, max_length))
    return request_id


class _ContextFilter(wsgi.Middleware, abc.ABC):
    def __init__(self, application: Callable, conf: Any,
                 is_admin_policy: Callable[[RequestContext], bool] | None = None) -> None:
        super().__init__(application)
        self.conf = conf
        self.is_admin_policy = is_admin_policy

    @classmethod
    def factory(cls, global_conf: dict, **local_conf: str) -> Callable:
        conf = config.conf_for_factory()
        config.register_server_opts(conf)
        policy_check = _admin_policy_check(conf)

        def filter_(app: Callable) -> _ContextFilter:
            return cls(app, conf, policy_check)
        return filter_

    def process_request(self, req: wsgi.Request) -> webob.Response | None:
        request_id = request_id_from(req, self.conf.max_request_id_length)
        req.context = self.make_context(req, request_id)
        return None

    @abc.abstractmethod
    def make_context(self, req: wsgi.Request, request_id: str) -> RequestContext:
        """The caller's context; raises NotAuthenticated."""

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        req = wsgi.Request(environ)
        try:
            self.process_request(req)
        except exception.GlanceError as err:
            return (faults.to_http(err) or faults.http_error(webob.exc.HTTPInternalServerError))(
                environ, start_response)
        request_id = req.context.request_id

        # The id goes on the answer's headers as they pass, so the body
        # (an image download) streams on untouched.
        def start_with_request_id(status: str, headers: list, exc_info: Any = None) -> Any:
            headers = [(name, value) for name, value in headers
                       if name.lower() != REQUEST_ID_RESPONSE_HEADER]
            headers.append((REQUEST_ID_RESPONSE_HEADER, request_id))
            return start_response(status, headers, exc_info)

        return self.application(environ, start_with_request_id)


class UnauthenticatedContextMiddleware(_ContextFilter):
    """Every caller is an admin with no identity."""

    def make_context(self, req: wsgi.Request, request_id: str) -> RequestContext:
        # The admin role too (the one the default policy rules name, and the
        # configured admin_role), so role-based rules treat the single
        # trusted operator as the admin it is.
        roles = tuple(dict.fromkeys(("admin", self.conf.admin_role.strip().lower())))
        return RequestContext(is_admin=True, roles=roles,
                              request_id=request_id,
                              owner_is_tenant=self.conf.owner_is_tenant)


class ContextMiddleware(_ContextFilter):
    """The caller as described by trusted identity headers."""

    def make_context(self, req: wsgi.Request, request_id: str) -> RequestContext:
        if req.headers.get("X-Identity-Status") != "Confirmed":
            if self.conf.allow_anonymous_access:
                return RequestContext(read_only=True, request_id=request_id,
                                      owner_is_tenant=self.conf.owner_is_tenant)
            raise exception.NotAuthenticated("This server could not verify "
                                             "that you are authorized.")
        roles = tuple(r.strip().lower() for r in
                      req.headers.get("X-Roles", "").split(",") if r.strip())
        catalog = None
        raw_catalog = req.headers.get("X-Service-Catalog")
        if raw_catalog:
            try:
                catalog = wsgi.parse_json(raw_catalog, "X-Service-Catalog")
            except exception.MalformedJSON:
                # Glance answered 500 here; a malformed header is bad input.
                raise exception.Invalid("Invalid service catalog json.")
        context = RequestContext(
            user=req.headers.get("X-User-Id") or None,
            tenant=req.headers.get("X-Tenant-Id") or None,
            roles=roles,
            auth_token=(req.headers.get("X-Auth-Token")
                        or req.headers.get("X-Storage-Token")),
            service_catalog=catalog,
            owner_is_tenant=self.conf.owner_is_tenant,
            request_id=request_id)
        is_admin = self.conf.admin_role.strip().lower() in roles
        if not is_admin and self.is_admin_policy is not None:
            is_admin = self.is_admin_policy(context)
        return context.replace(is_admin=is_admin)


def _admin_policy_check(conf: Any) -> Callable[[RequestContext], bool]:
    """The ``context_is_admin`` policy rule of the operator's policy file."""
    return policy.Enforcer(conf).check_is_admin
