"""The HTTP client glance-api, the scrubber and the cache tools use to reach
glance-registry.

Calls go over the keep-alive connections of ``transport.HTTPTransport``.
Every call passes the caller's context (token, request id and, with
``send_identity_headers``, the identity headers a trusted-auth registry
reads). Registry statuses become our exceptions through one table
(``faults.exception_for_status``). A refused connection is tried again by
the transport for a few seconds (a registry restart), whatever the call:
nothing was sent. A connection that failed after the request went out is
tried again only for reads. A write whose answer was lost after it was
sent raises RegistryReplyLost: it may have been committed, and only the
domain (``domain/registry_writes.py``) can find out what the registry now
holds.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlencode

from oslo_config import cfg

from glance_clone.common import config, crypt, exception, faults, redaction
from glance_clone.common.context import RequestContext
from glance_clone.registry.client.v1 import transport as transport_mod

LOG = logging.getLogger(__name__)

CLIENT_OPTS = [
    cfg.HostAddressOpt("registry_host", default="0.0.0.0",
                       help="Address of glance-registry."),
    cfg.PortOpt("registry_port", default=9191, help="Port of glance-registry."),
    cfg.StrOpt("registry_client_protocol", default="http",
               choices=("http", "https"), help="Protocol to reach the registry."),
    cfg.StrOpt("registry_client_key_file",
               help="Client TLS key (env GLANCE_CLIENT_KEY_FILE)."),
    cfg.StrOpt("registry_client_cert_file",
               help="Client TLS certificate (env GLANCE_CLIENT_CERT_FILE)."),
    cfg.StrOpt("registry_client_ca_file",
               help="CA bundle for the registry (env GLANCE_CLIENT_CA_FILE)."),
    cfg.BoolOpt("registry_client_insecure", default=False,
                help="Do not verify the registry's certificate."),
    cfg.IntOpt("registry_client_timeout", default=600, min=0,
               help="Seconds to wait for the registry; 0 = no limit."),
    cfg.BoolOpt("use_user_token", default=True,
                help="Forward the caller's token to the registry."),
    cfg.StrOpt("admin_user", help="Registry credentials when use_user_token is off."),
    cfg.StrOpt("admin_password", secret=True, help="Password of admin_user."),
    cfg.StrOpt("admin_tenant_name", help="Tenant (project) of admin_user."),
    cfg.StrOpt("admin_user_domain_name",
               help="Keystone v3 domain of admin_user (default: the domain "
                    "with id 'default')."),
    cfg.StrOpt("admin_project_domain_name",
               help="Keystone v3 domain of admin_tenant_name (default: the "
                    "domain with id 'default')."),
    cfg.StrOpt("auth_url", help="Keystone URL for the admin credentials."),
    cfg.StrOpt("auth_strategy", default="noauth", help="noauth or keystone."),
    cfg.StrOpt("auth_region", help="Keystone region."),
    cfg.StrOpt("metadata_encryption_key", secret=True,
               help="AES key (16, 24 or 32 characters) for location URLs "
                    "stored in the registry."),
    cfg.BoolOpt("send_identity_headers", default=False,
                help="Send X-User-Id, X-Tenant-Id, X-Roles and "
                     "X-Identity-Status to the registry."),
]

POOL_SIZE = 64


def register_opts(conf: cfg.ConfigOpts) -> None:
    config.register_once(conf, CLIENT_OPTS)


def _tls_context(conf: cfg.ConfigOpts) -> Any:
    key = conf.registry_client_key_file or os.environ.get("GLANCE_CLIENT_KEY_FILE")
    cert = conf.registry_client_cert_file or os.environ.get("GLANCE_CLIENT_CERT_FILE")
    ca = conf.registry_client_ca_file or os.environ.get("GLANCE_CLIENT_CA_FILE")
    verify: bool | str = False if conf.registry_client_insecure else (ca or True)
    client_cert = (cert, key) if cert and key else None
    return transport_mod.tls_context(verify, client_cert)


def _not_the_registry(answer: str) -> exception.BadGateway:
    return exception.BadGateway(
        "The image registry answered with %s, which glance-registry never sends: "
        "check that registry_host and registry_port name this deployment's "
        "glance-registry." % answer)


class RegistryClient:
    """Registry calls, each taking the caller's context first.

    ``as_service``: the program acts on its own behalf (glance-scrubber,
    glance-cache-prefetcher), so with keystone admin credentials configured
    every call carries their token, whatever ``use_user_token`` says.
    glance-api forwards its callers' tokens unless ``use_user_token`` is
    off.
    """

    def __init__(self, conf: cfg.ConfigOpts, transport: Any = None,
                 base_url: str | None = None, as_service: bool = False) -> None:
        register_opts(conf)
        self.conf = conf
        self.as_service = as_service
        host = conf.registry_host
        if ":" in host and not host.startswith("["):
            host = "[%s]" % host
        self.base_url = base_url or "%s://%s:%s" % (
            conf.registry_client_protocol, host, conf.registry_port)
        self.timeout = conf.registry_client_timeout or None
        self.transport = transport or self._new_transport()
        self._token: str | None = None
        if conf.metadata_encryption_key:
            crypt.check_key(conf.metadata_encryption_key)

    def _new_transport(self) -> transport_mod.HTTPTransport:
        tls = _tls_context(self.conf) if self.base_url.startswith("https:") else None
        return transport_mod.HTTPTransport(self.base_url, self.timeout, POOL_SIZE, tls)

    # -- credentials and encryption ----------------------------------------
    def _service_token(self, refresh: bool = False) -> str | None:
        """A token from the admin credentials, when the caller's is not used."""
        if (self.conf.use_user_token and not self.as_service) or not _admin_login(self.conf):
            return None
        if refresh or self._token is None:
            self._token = _keystone_token(self.conf)
        return self._token

    def _seal(self, image_meta: dict) -> dict:
        """Encrypt the location URLs of an image about to be written."""
        key = self.conf.metadata_encryption_key
        if not key:
            return image_meta
        sealed = dict(image_meta)
        if sealed.get("location"):
            sealed["location"] = crypt.encrypt(key, sealed["location"])
        if sealed.get("location_data"):
            sealed["location_data"] = [dict(loc, url=crypt.encrypt(key, loc["url"]))
                                       for loc in sealed["location_data"]]
        return sealed

    def _open(self, image: dict) -> dict:
        """Decrypt the location URLs of an image read from the registry."""
        key = self.conf.metadata_encryption_key
        if not key:
            return image
        if image.get("location"):
            image["location"] = crypt.decrypt(key, image["location"])
        for loc in image.get("location_data") or []:
            loc["url"] = crypt.decrypt(key, loc["url"])
        return image

    # -- transport ------------------------------------------------------
    def _headers(self, context: RequestContext) -> dict[str, str]:
        # The registry answers successes in JSON whatever we accept; errors
        # follow Accept, and for "*/*" webob writes them in HTML, so the
        # message would reach the caller as escaped markup.
        headers = {"X-Openstack-Request-ID": context.request_id,
                   "Accept": "text/plain"}
        token = self._service_token() or (
            context.auth_token if self.conf.use_user_token else None)
        if token:
            headers["X-Auth-Token"] = token
        if self.conf.send_identity_headers:
            headers.update({
                "X-User-Id": context.user or "",
                "X-Tenant-Id": context.tenant or "",
                "X-Roles": ",".join(context.roles),
                "X-Identity-Status": "Confirmed",
                "X-Service-Catalog": json.dumps(context.service_catalog),
            })
        return headers

    def _call(self, context: RequestContext, method: str, path: str,
              body: Any = None, params: Any = None,
              headers: dict[str, str] | None = None, _retried: bool = False,
              read: bool = False) -> Any:
        """One registry call; ``read`` marks a POST that changes nothing,
        retried like a GET."""
        all_headers = self._headers(context)
        if headers:
            all_headers.update(headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            all_headers["Content-Type"] = "application/json"
        target = path
        if params:
            target += "?" + urlencode(
                [(k, v) for k, v in params.items() if v is not None], doseq=True)
        reading = method == "GET" or read
        retries = transport_mod.Backoff(getattr(self.transport, "reconnect_time", 0))
        while True:
            try:
                reply = self.transport.send(method, target, all_headers, data)
                break
            except transport_mod.NotSent:
                # The transport already tried again for its reconnect time.
                raise exception.RegistryUnavailable(
                    "The image registry could not be reached.") from None
            except transport_mod.TransportTimeout:
                # A write may still be committed: the caller must find out.
                lost = exception.RegistryUnavailable if reading else exception.RegistryReplyLost
                raise lost("The image registry did not answer in time.")
            except transport_mod.TransportError as err:
                # A registry stopping resets the connections it had not
                # served yet: a read is sent again, a little later.
                if reading and retries.wait():
                    LOG.warning("Registry connection failed, retrying: %s", err)
                    continue
                if reading:
                    raise exception.RegistryUnavailable(
                        "The image registry could not be reached.")
                raise exception.RegistryReplyLost(
                    "The connection to the image registry failed before it answered.")
        if reply.status == 401 and self._service_token() and not _retried:
            # The admin token expired: authenticate again, once.
            self._service_token(refresh=True)
            return self._call(context, method, path, body, params, headers,
                              _retried=True, read=read)
        if reply.status >= 400:
            message = faults.explanation_from_body(reply.body.decode("utf-8", "replace"))
            raise faults.exception_for_status(reply.status, message)
        if reply.status >= 300 or reply.status < 200:
            # The registry never redirects: whatever answered is not it
            # (registry_host / registry_port naming glance-api, say).
            raise _not_the_registry("HTTP %d" % reply.status)
        if reply.status == 204 or not reply.body:
            return None
        try:
            found = json.loads(reply.body)
        except ValueError:
            raise _not_the_registry("a body that is not JSON") from None
        return found

    @staticmethod
    def _path(template: str, *parts: str) -> str:
        """``template`` with each part percent-encoded as one path segment."""
        return template % tuple(quote(part, safe="") for part in parts)

    # -- images -----------------------------------------------------------
    def get_images(self, context: RequestContext, **params: Any) -> list[dict]:
        return self._call(context, "GET", "/images", params=params)["images"]

    def get_images_detailed(self, context: RequestContext, **params: Any) -> list[dict]:
        images = self._call(context, "GET", "/images/detail", params=params)["images"]
        return [self._open(image) for image in images]

    def get_image(self, context: RequestContext, image_id: str) -> dict:
        return self._open(self._call(context, "GET",
                                     self._path("/images/%s", image_id))["image"])

    def add_image(self, context: RequestContext, image_meta: dict) -> dict:
        return self._open(self._call(context, "POST", "/images",
                                     body={"image": self._seal(image_meta)})["image"])

    def update_image(self, context: RequestContext, image_id: str, image_meta: dict,
                     purge_props: bool = False, from_state: str | None = None,
                     properties_from: dict | None = None,
                     remove_properties: list[str] | None = None) -> dict:
        """Change an image; with ``from_state`` only while it has that
        status, with ``properties_from`` only while those properties have
        those values (None: absent), else StatusConflict. Properties named
        in ``remove_properties`` are removed."""
        headers = {"X-Glance-Registry-Purge-Props": "true"} if purge_props else None
        body: dict[str, Any] = {"image": self._seal(image_meta), "from_state": from_state}
        if properties_from:
            body["properties_from"] = properties_from
        if remove_properties:
            body["remove_properties"] = list(remove_properties)
        return self._open(self._call(context, "PUT", self._path("/images/%s", image_id),
                                     body=body, headers=headers)["image"])

    def delete_image(self, context: RequestContext, image_id: str,
                     from_state: str | None = None, to_state: str | None = None) -> dict:
        """Soft-delete; with ``from_state``, only while the image has that
        status (else StatusConflict), which then becomes ``to_state``:
        deleted by default, or pending_delete to leave the data to the
        scrubber."""
        headers = {}
        if from_state:
            headers["X-Glance-Registry-From-State"] = from_state
        if to_state:
            headers["X-Glance-Registry-To-State"] = to_state
        return self._open(self._call(context, "DELETE",
                                     self._path("/images/%s", image_id),
                                     headers=headers or None)["image"])

    def search_images(self, context: RequestContext, search: dict) -> list[dict]:
        """A page of images as v2 lists them (see the registry's
        ``POST /images/search``)."""
        images = self._call(context, "POST", "/images/search", body=search,
                            read=True)["images"]
        return [self._open(image) for image in images]

    # -- tags ---------------------------------------------------------------
    def add_tag(self, context: RequestContext, image_id: str, tag: str) -> None:
        self._call(context, "PUT", self._path("/images/%s/tags/%s", image_id, tag))

    def delete_tag(self, context: RequestContext, image_id: str, tag: str) -> None:
        self._call(context, "DELETE", self._path("/images/%s/tags/%s", image_id, tag))

    # -- members ----------------------------------------------------------
    def get_image_members(self, context: RequestContext, image_id: str) -> list[dict]:
        """Memberships: member_id, can_share (v1), status and timestamps (v2)."""
        return self._call(context, "GET",
                          self._path("/images/%s/members", image_id))["members"]

    def set_member_status(self, context: RequestContext, image_id: str,
                          member_id: str, status: str) -> dict:
        """The member's v2 consent (pending, accepted, rejected)."""
        return self._call(context, "PUT",
                          self._path("/images/%s/members/%s/status", image_id,
                                     member_id),
                          body={"status": status})["member"]

    def get_member_images(self, context: RequestContext, member_id: str) -> list[dict]:
        return self._call(context, "GET",
                          self._path("/shared-images/%s", member_id))["shared_images"]

    def replace_members(self, context: RequestContext, image_id: str,
                        memberships: Iterable[dict]) -> None:
        self._call(context, "PUT", self._path("/images/%s/members", image_id),
                   body={"memberships": list(memberships)})

    def add_member(self, context: RequestContext, image_id: str, member_id: str,
                   can_share: bool | None = None) -> None:
        body = None if can_share is None else {"member": {"can_share": can_share}}
        self._call(context, "PUT", self._path("/images/%s/members/%s", image_id, member_id),
                   body=body)

    def delete_member(self, context: RequestContext, image_id: str, member_id: str) -> None:
        self._call(context, "DELETE",
                   self._path("/images/%s/members/%s", image_id, member_id))

    # -- tasks ------------------------------------------------------------
    def get_tasks(self, context: RequestContext, **params: Any) -> list[dict]:
        """A page of tasks: filters on the columns of a task's row (id,
        type, status, owner, image_id, request_id, user_id, the times,
        deleted); sort_key, sort_dir, limit, marker; updated_before (ISO
        8601)."""
        return self._call(context, "GET", "/tasks", params=params)["tasks"]

    def get_task(self, context: RequestContext, task_id: str) -> dict:
        return self._call(context, "GET", self._path("/tasks/%s", task_id))["task"]

    def add_task(self, context: RequestContext, task: dict) -> dict:
        """Add a task; ``task["id"]`` is chosen by the caller."""
        return self._call(context, "POST", "/tasks", body={"task": task})["task"]

    def update_task(self, context: RequestContext, task_id: str, values: dict,
                    from_state: str | None = None) -> dict:
        """Change a task, only while its status is ``from_state`` when given
        (else StatusConflict)."""
        return self._call(context, "PUT", self._path("/tasks/%s", task_id),
                          body={"task": values, "from_state": from_state})["task"]


def _domains(user_domain: str | None, project_domain: str | None) -> dict[str, str]:
    """Keystone v3 domains by name when configured, else Keystone's own
    domain, whose id is "default"."""
    user = {"user_domain_name": user_domain} if user_domain else {"user_domain_id": "default"}
    project = ({"project_domain_name": project_domain} if project_domain
               else {"project_domain_id": "default"})
    return user | project


def _admin_login(conf: cfg.ConfigOpts) -> bool:
    """Whether admin credentials for Keystone are configured."""
    return (conf.auth_strategy == "keystone" or bool(conf.auth_url)) \
        and bool(conf.admin_user)


def admin_token(conf: cfg.ConfigOpts) -> str | None:
    """A new token for the admin credentials, None when none are
    configured; raises as ``_keystone_token``."""
    register_opts(conf)
    return _keystone_token(conf) if _admin_login(conf) else None


def _keystone_token(conf: cfg.ConfigOpts) -> str:
    """A token for the admin credentials.

    Raises NotAuthenticated when Keystone refuses them, and
    IdentityUnavailable (503) when Keystone cannot be reached or fails: the
    credentials may well be right, so the caller should retry, not fix them.
    """
    try:
        from keystoneauth1 import exceptions as ks_exceptions
        from keystoneauth1 import session as ks_session
        from keystoneauth1.identity import generic
    except ImportError:
        raise exception.MissingDependency(
            feature="auth_strategy = keystone", package="keystoneauth1",
            extra="keystone") from None
    auth_url = conf.auth_url or os.environ.get("OS_AUTH_URL")
    plugin = generic.Password(auth_url=auth_url, username=conf.admin_user,
                              password=conf.admin_password,
                              project_name=conf.admin_tenant_name,
                              **_domains(conf.admin_user_domain_name,
                                         conf.admin_project_domain_name))
    try:
        return ks_session.Session(auth=plugin).get_token()
    except (ks_exceptions.ConnectionError, ks_exceptions.DiscoveryFailure,
            ks_exceptions.HttpServerError) as err:
        LOG.warning("Keystone at %s did not answer the admin login (%s)",
                    redaction.redact_url(auth_url or ""), type(err).__name__)
        raise exception.IdentityUnavailable() from None
    except ks_exceptions.ClientException as err:
        raise exception.NotAuthenticated(
            "Could not authenticate to the registry with the admin credentials: %s" % err)
