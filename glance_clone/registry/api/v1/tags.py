"""``PUT`` / ``DELETE /images/{image_id}/tags/{tag}``: our extension for the
v2 API. Both answer 204; the caller must be allowed to change the image
(as for an image PUT)."""

from __future__ import annotations

import webob

from glance_clone.common import exception, wsgi
from glance_clone.db.api import Database
from glance_clone.registry.api.v1 import images


def _tag(value: str) -> str:
    tag = images.path_text(value)
    images.check_text("the tag", tag)
    if not tag or len(tag) > images.TAG_LENGTH:
        raise exception.Invalid("A tag has 1 to %d characters" % images.TAG_LENGTH)
    return tag


class Controller:
    def __init__(self, db: Database) -> None:
        self.db = db

    def update(self, req: wsgi.Request, image_id: str, tag: str) -> webob.Response:
        """Add a tag; raises Invalid, ImageNotFound, Forbidden, ReadOnly."""
        self.db.image_tag_add(req.context, images.path_text(image_id), _tag(tag))
        return webob.Response(request=req, status=204, content_type=None)

    def delete(self, req: wsgi.Request, image_id: str, tag: str) -> webob.Response:
        """Remove a tag; raises NotFound, ImageNotFound, Forbidden, ReadOnly."""
        self.db.image_tag_delete(req.context, images.path_text(image_id), _tag(tag))
        return webob.Response(request=req, status=204, content_type=None)


def create_resource(db: Database) -> wsgi.Resource:
    return wsgi.Resource(Controller(db))
