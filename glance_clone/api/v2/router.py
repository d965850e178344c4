"""glance-api's /v2 application: the routes of the v2 Image API and the
objects behind them (one catalog, one sharing service, one set of
schemas). Any other method on a routed path is a 405 with ``Allow``."""

from __future__ import annotations

import functools
from typing import Any

import routes
from oslo_config import cfg

from glance_clone.api import property_protections
from glance_clone.api.v1 import router as v1_router
from glance_clone.api.v2.images import ImagesController, SchemasController
from glance_clone.api.v2.members import MembersController
from glance_clone.api.v2.schemas import Schemas
from glance_clone.common import config, policy, wsgi
from glance_clone.domain import quota
from glance_clone.domain.catalog import ImageCatalog
from glance_clone.domain.images import ImageService
from glance_clone.domain.repository import ImageRepository
from glance_clone.domain.sharing import Sharing
from glance_clone.registry.client.v1.client import RegistryClient
from glance_clone.store import source_filter

PAGING_OPTS = [
    cfg.IntOpt("limit_param_default", default=25, min=0,
               help="Page size of image lists when the caller gives no limit."),
    cfg.IntOpt("api_limit_max", default=1000, min=0,
               help="Largest page size of image lists."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    v1_router.register_opts(conf)
    config.register_once(conf, PAGING_OPTS)


class API(wsgi.Router):
    """glance-api's /v2 application."""

    def __init__(self, conf: cfg.ConfigOpts, registry: Any = None, stores: Any = None) -> None:
        register_opts(conf)
        quota.parse_storage_quota(conf.user_storage_quota)
        self.conf = conf
        self.registry = registry or RegistryClient(conf)
        self.stores = stores or v1_router._store_set(conf)
        enforcer = policy.Enforcer(conf)
        rules = property_protections.PropertyRules(conf, enforcer)
        # The v1 service's delete and upload paths serve v2 too: one of each.
        deleter = ImageService(conf, self.registry, self.stores, enforcer, rules,
                               functools.partial(source_filter.check_source, conf))
        repository = ImageRepository(self.registry, deleter.writes)
        self.catalog = ImageCatalog(conf, repository, enforcer, rules, deleter.uploader,
                                    deleter)
        self.sharing = Sharing(conf, repository, self.catalog, enforcer)
        self.schemas = Schemas(conf.image_format.disk_formats,
                               conf.image_format.container_formats)
        super().__init__(self._mapper())

    @classmethod
    def factory(cls, global_conf: dict, **local_conf: str) -> API:
        return cls(config.conf_for_factory())

    def _mapper(self) -> routes.Mapper:
        mapper = routes.Mapper()
        images = wsgi.Resource(ImagesController(self.conf, self.catalog, self.schemas),
                               deserializer=_ImagesDeserializer())
        members = wsgi.Resource(MembersController(self.sharing))
        schemas = wsgi.Resource(SchemasController(self.schemas))
        connect = wsgi.connect_methods
        connect(mapper, "/schemas/{name}", schemas, {"GET": "show"})
        connect(mapper, "/images", images, {"GET": "index", "POST": "create"})
        connect(mapper, "/images/{image_id}", images,
                {"GET": "show", "PATCH": "update", "DELETE": "delete"})
        for action in ("deactivate", "reactivate"):
            connect(mapper, "/images/{image_id}/actions/" + action, images,
                    {"POST": action})
        connect(mapper, "/images/{image_id}/file", images,
                {"PUT": "upload", "GET": "download"})
        connect(mapper, "/images/{image_id}/tags/{tag}", images,
                {"PUT": "add_tag", "DELETE": "remove_tag"})
        connect(mapper, "/images/{image_id}/members", members,
                {"GET": "index", "POST": "create"})
        connect(mapper, "/images/{image_id}/members/{member_id}", members,
                {"GET": "show", "PUT": "update", "DELETE": "delete"})
        return mapper


class _ImagesDeserializer(wsgi.JSONDeserializer):
    """JSON for create; PATCH bodies and image data are read by the action."""

    def update(self, req: wsgi.Request) -> dict[str, Any]:
        return {}

    upload = update
