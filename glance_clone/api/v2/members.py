"""v2 member routes: parse, call ``Sharing``, render."""

from __future__ import annotations

from typing import Any

import webob

from glance_clone.api.v2 import bodies, views
from glance_clone.api.v2.images import json_response, no_content, path_text
from glance_clone.common import wsgi
from glance_clone.domain.sharing import Sharing


class MembersController:
    def __init__(self, sharing: Sharing) -> None:
        self.sharing = sharing

    def index(self, req: wsgi.Request, image_id: str) -> webob.Response:
        rows = self.sharing.members(req.context, image_id)
        return json_response(req, {"members": [views.member_view(r) for r in rows],
                                   "schema": "/v2/schemas/members"})

    def create(self, req: wsgi.Request, image_id: str, body: Any = None) -> webob.Response:
        row = self.sharing.add(req.context, image_id, bodies.member_id(body))
        return json_response(req, views.member_view(row))

    def show(self, req: wsgi.Request, image_id: str, member_id: str) -> webob.Response:
        row = self.sharing.member(req.context, image_id, path_text(member_id))
        return json_response(req, views.member_view(row))

    def update(self, req: wsgi.Request, image_id: str, member_id: str,
               body: Any = None) -> webob.Response:
        row = self.sharing.set_status(req.context, image_id, path_text(member_id),
                                      bodies.member_status(body))
        return json_response(req, views.member_view(row))

    def delete(self, req: wsgi.Request, image_id: str, member_id: str) -> webob.Response:
        self.sharing.remove(req.context, image_id, path_text(member_id))
        return no_content(req)
