"""Routes of the registry's v1 API (``registry-api.md`` section 2).

Only the routes below exist: any other path or method is a 404 (501 for
unknown methods), except the two 405s Glance answers with
``Allow: PUT, DELETE``.
"""

from __future__ import annotations

import routes
from oslo_config import cfg

from glance_clone.common import config, wsgi
from glance_clone.db.api import Database
from glance_clone.registry.api.v1 import images, members, search, tags, tasks

PAGING_OPTS = [
    cfg.IntOpt("limit_param_default", default=25, min=0,
               help="Page size of image lists when the caller gives no limit."),
    cfg.IntOpt("api_limit_max", default=1000, min=0,
               help="Largest page size of image lists."),
]

MEMBER_ALLOW = "PUT, DELETE"


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the v1 options; safe to call more than once."""
    config.register_once(conf, PAGING_OPTS)


def connect_routes(mapper: routes.Mapper, conf: cfg.ConfigOpts,
                   db: Database) -> None:
    """Add the v1 image, member and shared-image routes to ``mapper``, and
    our extensions for the v2 API (search, tags, member status, tasks)."""
    image_resource = images.create_resource(conf, db)
    member_resource = members.create_resource(db)
    connect = wsgi.connect_methods
    connect(mapper, "/", image_resource, {"GET": "index"}, reject_others=False)
    connect(mapper, "/images", image_resource,
            {"GET": "index", "POST": "create"}, reject_others=False)
    connect(mapper, "/images/search", search.create_resource(conf, db),
            {"POST": "search"}, reject_others=False)
    connect(mapper, "/images/{image_id}/tags/{tag}", tags.create_resource(db),
            {"PUT": "update", "DELETE": "delete"}, reject_others=False)
    # Before /images/{id}, so that "detail" is never taken for an id.
    connect(mapper, "/images/detail", image_resource, {"GET": "detail"},
            reject_others=False)
    connect(mapper, "/images/{id}", image_resource,
            {"GET": "show", "PUT": "update", "DELETE": "delete"},
            reject_others=False)
    members_path = "/images/{image_id}/members"
    member_path = members_path + "/{member_id}"
    connect(mapper, members_path, member_resource,
            {"GET": "index", "PUT": "update_all"}, reject_others=False)
    mapper.connect(members_path, controller=wsgi.reject_method(MEMBER_ALLOW),
                   conditions={"method": ["POST"]})
    connect(mapper, member_path, member_resource,
            {"PUT": "update", "DELETE": "delete"}, reject_others=False)
    mapper.connect(member_path, controller=wsgi.reject_method(MEMBER_ALLOW),
                   conditions={"method": ["GET"]})
    connect(mapper, member_path + "/status", member_resource,
            {"PUT": "update_status"}, reject_others=False)
    mapper.connect("/shared-images/{member_id}", controller=member_resource,
                   action="index_shared_images")
    task_resource = tasks.create_resource(conf, db)
    connect(mapper, "/tasks", task_resource, {"GET": "index", "POST": "create"},
            reject_others=False)
    connect(mapper, "/tasks/{id}", task_resource, {"GET": "show", "PUT": "update"},
            reject_others=False)
