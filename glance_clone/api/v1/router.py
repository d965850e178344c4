"""The v1 router: routes of api-v1.md section 3 and the objects behind them."""

from __future__ import annotations

import functools
from typing import Any

import routes
from oslo_config import cfg

from glance_clone.api import property_protections
from glance_clone.api.v1.images import ImagesController
from glance_clone.api.v1.members import MembersController
from glance_clone.common import config, exception, policy, wsgi
from glance_clone.domain import inspection, quota, unified_limits, upload
from glance_clone.domain.images import ImageService
from glance_clone.domain.members import MemberService
from glance_clone.registry.client.v1 import client as registry_client
from glance_clone.registry.client.v1.client import RegistryClient
from glance_clone.store import backend, source_filter

IMAGE_OPTS = [
    cfg.IntOpt("image_size_cap", default=1099511627776, min=0, max=9223372036854775808,
               help="Largest image accepted, in bytes."),
    cfg.StrOpt("user_storage_quota", default="0",
               help="Bytes each owner may store (B, KB, MB, GB, TB suffixes); 0 = no limit."),
    cfg.IntOpt("image_property_quota", default=128,
               help="Most properties an image may have; negative = no limit."),
    cfg.IntOpt("image_member_quota", default=128,
               help="Most members an image may have; negative = no limit."),
    cfg.IntOpt("image_tag_quota", default=128,
               help="v2 only: most tags an image may have; negative = no limit."),
    cfg.IntOpt("image_location_quota", default=10,
               help="v2 only: most locations an image may have; negative = no limit."),
    cfg.BoolOpt("delayed_delete", default=False,
                help="Deleted images go to pending_delete for glance-scrubber."),
]
# Newer Glance's lists (Glance 11 had neither vhdx and ploop nor docker and
# compressed); both APIs and the v2 schema take them from here.
FORMAT_OPTS = [
    cfg.ListOpt("disk_formats", default=["ami", "ari", "aki", "vhd", "vhdx", "vmdk",
                                         "raw", "qcow2", "vdi", "iso", "ploop"],
                help="Accepted disk formats."),
    cfg.ListOpt("container_formats", default=["ami", "ari", "aki", "bare", "ovf", "ova",
                                              "docker", "compressed"],
                help="Accepted container formats."),
]

NOT_DETAIL = r"(?!detail(?:/|$))[^/]+"
DETAIL_HEAD_MESSAGE = "This operation is currently not permitted on Glance images details."


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Every option glance-api's v1 app reads."""
    config.register_once(conf, IMAGE_OPTS)
    config.register_once(conf, FORMAT_OPTS, group="image_format")
    inspection.register_opts(conf)
    upload.register_opts(conf)
    policy.register_opts(conf)
    property_protections.register_opts(conf)
    backend.register_opts(conf)
    registry_client.register_opts(conf)
    unified_limits.register_opts(conf)


def _store_set(conf: cfg.ConfigOpts) -> Any:
    try:
        return backend.StoreSet(conf)
    except exception.ConfigError as err:
        raise exception.StoreConfigError(str(err))


class API(wsgi.Router):
    """glance-api's /v1 application."""

    def __init__(self, conf: cfg.ConfigOpts, registry: Any = None, stores: Any = None) -> None:
        register_opts(conf)
        quota.parse_storage_quota(conf.user_storage_quota)  # fail at start, not per upload
        unified_limits.check_opts(conf)
        self.conf = conf
        self.registry = registry or RegistryClient(conf)
        self.stores = stores or _store_set(conf)
        self.policy = policy.Enforcer(conf)
        self.property_rules = property_protections.PropertyRules(conf, self.policy)
        self.service = ImageService(
            conf, self.registry, self.stores, self.policy, self.property_rules,
            functools.partial(source_filter.check_source, conf))
        super().__init__(self._mapper())

    @classmethod
    def factory(cls, global_conf: dict, **local_conf: str) -> API:
        return cls(config.conf_for_factory())

    def _mapper(self) -> routes.Mapper:
        mapper = routes.Mapper()
        # Image bodies are raw bytes streamed by the controller, never JSON.
        images = wsgi.Resource(ImagesController(self.conf, self.service),
                               deserializer=wsgi.StreamingDeserializer())
        members = wsgi.Resource(MembersController(
            MemberService(self.conf, self.registry, self.policy, self.service.writes)))
        connect = wsgi.connect_methods
        connect(mapper, "/", images, {"GET": "index"}, allow="GET, POST")
        connect(mapper, "/images", images, {"GET": "index", "POST": "create"})
        mapper.connect("/images/detail", conditions={"method": ["HEAD"]},
                       controller=wsgi.reject_method("GET", DETAIL_HEAD_MESSAGE))
        connect(mapper, "/images/detail", images, {"GET": "detail"},
                allow="GET, HEAD")
        connect(mapper, "/images/{id}", images,
                {"HEAD": "meta", "GET": "show", "PUT": "update", "DELETE": "delete"},
                allow="GET, HEAD, PUT, DELETE")
        # "detail" names the list, never an image: /images/detail/members is
        # not a path (the registry would answer its list for that id).
        image_id = {"image_id": NOT_DETAIL}
        connect(mapper, "/images/{image_id}/members", members,
                {"GET": "index", "PUT": "update_all"}, requirements=image_id)
        mapper.connect("/images/{image_id}/members/{id}", requirements=image_id,
                       controller=wsgi.reject_method(""), conditions={"method": ["GET"]})
        connect(mapper, "/images/{image_id}/members/{id}", members,
                {"PUT": "update", "DELETE": "delete"}, allow="GET, PUT, DELETE",
                requirements=image_id)
        mapper.connect("/shared-images/{id}", controller=members,
                       action="index_shared_images")
        return mapper

