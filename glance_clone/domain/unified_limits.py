"""Per-project quotas kept in Keystone (``use_keystone_limits``).

With ``use_keystone_limits = True`` the limits of the four image quotas
come from Keystone's unified limits: a registered (default) limit per
resource for this service, overridden by a project limit where one exists.
A resource with neither has a limit of 0, as unified limits define it. The
usage is what ``usage.project_counts`` counts through the registry, the
same figures ``GET /v2/info/usage`` shows, and ``usage.enforce`` checks.

Where the quotas are checked, and with which delta (what the request is
about to add):

- a new image (v1 and v2 create, import tasks): ``image_count_total`` + 1;
- an upload of a queued image (v1 and v2), and a new location whose data
  is read first (``POST /v2/images/{id}/locations``): ``image_size_total``
  + 0 and ``image_count_uploading`` + 1;
- the first piece of a staging upload: ``image_stage_total`` + the size
  the data will have, in MiB rounded up (x-openstack-image-size, else the
  Content-Range total, else Content-Length; 0 when none is known) and
  ``image_count_uploading`` + 1;
- an import request: ``image_size_total`` + 0; for the methods that fetch
  or copy data (not glance-direct, whose image is already uploading), also
  ``image_stage_total`` + 0 and ``image_count_uploading`` + 1.

A request is refused (413) when usage + delta would exceed the limit.
Other than a stage's, sizes are checked with a delta of 0, as Glance does:
the size of a stream is not known before it ends, so the upload that
crosses the limit is allowed and the next one is refused. Counts are checked strictly: with
``image_count_uploading = 2`` two uploads run at once, not three.

With these quotas on, ``user_storage_quota`` is not used (Glance ignores
it then too). The limits are read for each check (two small Keystone
calls), so a limit changed in Keystone applies to the next request.

Keystone is reached with the ``[oslo_limit]`` options Glance's
deployments already have: keystoneauth's auth options (a user with the
``reader`` role on the system scope, ``system_scope = all``, so that it may
read any project's limits) and the endpoint of this image service:
``endpoint_id``, or ``endpoint_service_type`` / ``endpoint_service_name``
with ``endpoint_region_name`` and ``endpoint_interface``. The endpoint
names the service and region the limits are registered for.

oslo.limit does this job in Glance, but reads its options from the
process-wide configuration object; our servers keep none, so this module
talks to Keystone's limits API through keystoneauth directly.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

from oslo_config import cfg

from glance_clone.common import config, exception

LOG = logging.getLogger(__name__)

GROUP = "oslo_limit"

IMAGE_SIZE_TOTAL = "image_size_total"
IMAGE_STAGE_TOTAL = "image_stage_total"
IMAGE_COUNT_TOTAL = "image_count_total"
IMAGE_COUNT_UPLOADING = "image_count_uploading"
QUOTAS = (IMAGE_SIZE_TOTAL, IMAGE_STAGE_TOTAL, IMAGE_COUNT_TOTAL, IMAGE_COUNT_UPLOADING)

OPTS = [
    cfg.BoolOpt("use_keystone_limits", default=False,
                help="Take the per-project image quotas (image_size_total, "
                     "image_stage_total, image_count_total, "
                     "image_count_uploading) from Keystone's unified limits, "
                     "reached with the [oslo_limit] options."),
]
ENDPOINT_OPTS = [
    cfg.StrOpt("endpoint_id",
               help="Keystone id of this image service's endpoint, whose service "
                    "and region the limits are registered for."),
    cfg.StrOpt("endpoint_service_name",
               help="Without endpoint_id: the name of the image service in "
                    "Keystone's catalog."),
    cfg.StrOpt("endpoint_service_type",
               help="Without endpoint_id: the type of the image service in "
                    "Keystone's catalog (image)."),
    cfg.StrOpt("endpoint_region_name",
               help="Without endpoint_id: the region of the endpoint."),
    cfg.StrOpt("endpoint_interface", default="public",
               help="Without endpoint_id: the interface of the endpoint."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    config.register_once(conf, OPTS)
    config.register_once(conf, ENDPOINT_OPTS, group=GROUP)
    try:
        from keystoneauth1 import loading
    except ImportError:
        return   # check_opts names the package when the quotas are on
    config.register_once(conf, loading.get_auth_common_conf_options(), group=GROUP)


def check_opts(conf: cfg.ConfigOpts) -> None:
    """At start: ConfigError (one line naming the fix) for settings that
    cannot work, so that no request has to find out."""
    if not conf.use_keystone_limits:
        return
    _keystoneauth()
    limit = conf[GROUP]
    if not (limit.endpoint_id or limit.endpoint_service_type
            or limit.endpoint_service_name):
        raise exception.ConfigError(
            "use_keystone_limits = True needs this service's endpoint in "
            "[oslo_limit]: set endpoint_id, or endpoint_service_type (and "
            "endpoint_region_name)")
    if not limit.auth_type:
        raise exception.ConfigError(
            "use_keystone_limits = True needs Keystone credentials in "
            "[oslo_limit]: set auth_type = password, auth_url, username, "
            "password, user_domain_name and system_scope = all")


def _keystoneauth() -> Any:
    try:
        import keystoneauth1
    except ImportError:
        raise exception.MissingDependency(
            feature="use_keystone_limits", package="keystoneauth1",
            extra="keystone") from None
    return keystoneauth1


class KeystoneLimits:
    """Reads the limits of one project from Keystone's unified limits."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf
        self._adapter: Any = None
        self._scope: dict[str, str] | None = None   # service_id, region_id
        self._lock = threading.RLock()   # _endpoint_scope calls _keystone

    def limits(self, project_id: str) -> dict[str, int]:
        """``{quota: limit}`` for ``project_id``; raises IdentityUnavailable."""
        scope = self._endpoint_scope()
        registered = self._get("/registered_limits", scope)["registered_limits"]
        overrides = self._get("/limits", dict(scope, project_id=project_id))["limits"]
        found = {item["resource_name"]: item["default_limit"] for item in registered}
        found.update({item["resource_name"]: item["resource_limit"]
                      for item in overrides if item.get("project_id") == project_id})
        return {name: int(found.get(name, 0)) for name in QUOTAS}

    def _endpoint_scope(self) -> dict[str, str]:
        """The service and region of this image service's endpoint, looked
        up once."""
        with self._lock:
            if self._scope is None:
                self._scope = self._find_endpoint()
            return self._scope

    def _find_endpoint(self) -> dict[str, str]:
        limit = self.conf[GROUP]
        if limit.endpoint_id:
            endpoint = self._get("/endpoints/" + limit.endpoint_id, {})["endpoint"]
        else:
            query = {key: value for key, value in (
                ("type", limit.endpoint_service_type),
                ("name", limit.endpoint_service_name)) if value}
            services = self._get("/services", query)["services"]
            if len(services) != 1:
                raise self._misconfigured("%d services match %s" % (len(services), query))
            query = {"service_id": services[0]["id"],
                     "interface": limit.endpoint_interface.removesuffix("URL")}
            if limit.endpoint_region_name:
                query["region_id"] = limit.endpoint_region_name
            endpoints = self._get("/endpoints", query)["endpoints"]
            if len(endpoints) != 1:
                raise self._misconfigured("%d endpoints match %s"
                                          % (len(endpoints), query))
            endpoint = endpoints[0]
        scope = {"service_id": endpoint["service_id"]}
        if endpoint.get("region_id"):
            scope["region_id"] = endpoint["region_id"]
        return scope

    @staticmethod
    def _misconfigured(reason: str) -> exception.ServiceUnavailable:
        LOG.error("[oslo_limit] does not name one endpoint of this service: %s", reason)
        return exception.ServiceUnavailable(
            "The image quotas cannot be checked: [oslo_limit] does not name one "
            "endpoint of this service in Keystone.")

    def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        from keystoneauth1 import exceptions as ks_exceptions
        try:
            response = self._keystone().get(path, params=params)
        except ks_exceptions.NotFound:
            raise self._misconfigured("Keystone has no %s" % path) from None
        except (ks_exceptions.ClientException, OSError) as err:
            LOG.error("Keystone unified limits unreachable at %s: %s", path, err)
            raise exception.IdentityUnavailable(
                "The identity service (Keystone) could not be reached to check "
                "the image quotas; try again later.") from None
        body: dict[str, Any] = response.json()
        return body

    def _keystone(self) -> Any:
        """An adapter on Keystone's v3 API, logged in with [oslo_limit]."""
        with self._lock:
            if self._adapter is None:
                _keystoneauth()
                from keystoneauth1 import adapter, loading
                loading.register_session_conf_options(self.conf, GROUP)
                auth = loading.load_auth_from_conf_options(self.conf, GROUP)
                session = loading.load_session_from_conf_options(
                    self.conf, GROUP, auth=auth)
                self._adapter = adapter.Adapter(
                    session, service_type="identity", interface="public",
                    version=(3, 0), raise_exc=True)
            return self._adapter


# One client per server configuration (ConfigOpts is not hashable: keyed
# by id, with a weak reference telling a reused id from its first owner).
_clients: dict[int, tuple[weakref.ref, KeystoneLimits]] = {}
_clients_lock = threading.Lock()


def limits_for(conf: cfg.ConfigOpts, project_id: str) -> dict[str, int] | None:
    """Keystone's limits for the project, or None when they are not used."""
    register_opts(conf)
    if not conf.use_keystone_limits:
        return None
    with _clients_lock:
        owner, client = _clients.get(id(conf), (None, None))
        if client is None or owner() is not conf:
            client = KeystoneLimits(conf)
            _clients[id(conf)] = (weakref.ref(conf), client)
    return client.limits(project_id)
